"""Cohen's later metadata schema on a faithful fake tree: hierarchy findings, RT_PCR_positive, CT, broken quoting."""


from PIL import Image

from cxrcurate.sources import Dropped, Record, get_source

HEADER = ("patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,went_icu,in_icu,"
          "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,"
          "lymphocyte_count,view,modality,date,location,folder,filename,doi,url,license,clinical_notes,other_notes,"
          "Unnamed: 29")
ROWS = [
    '2,0,M,65,Pneumonia/Viral/COVID-19,Y,Y,,,,,,,,,,,,PA,X-ray,"January 22, 2020","Wuhan, China",images,a.jpg,,'
    'https://example.org/a,CC BY-NC-SA,"notes, quoted",,',
    "311a,,F,8,Pneumonia/Bacterial/Streptococcus,,,,,,,,,,,,,,AP Supine,X-ray,2020,Milan,images,b.png,,,CC BY,"
    "child with fever,,",
    "40,,M,,No Finding,,,,,,,,,,,,,,PA,X-ray,,,images,c.jpg,,,,,,",
    "41,,F,50,todo,,,,,,,,,,,,,,L,X-ray,,,images,d.jpg,,,,,,",
    "42,,F,51,Pneumonia/Lipoid,,,,,,,,,,,,,,PA,X-ray,,,images,e.jpg,,,,,,",
    "43,,M,60,Pneumonia/Viral/COVID-19,Y,,,,,,,,,,,,,Axial,CT,,,images,f.jpg,,,,,,",
    "44,,M,60,Pneumonia/Viral/COVID-19,Y,,,,,,,,,,,,,Axial,CT,,,volumes,coronacases_001.nii.gz,,,,,,",
    # later upstream rows carry unquoted commas in the notes: the surplus fields belong to clinical_notes
    "45,,F,70,Pneumonia/Fungal/Aspergillosis,N,,,,,,,,,,,,,PA,X-ray,,,images,g.jpg,,,CC BY,fever, cough, dyspnea,,",
    "46,,M,33,Pneumonia/Viral/COVID-19,Y,,,,,,,,,,,,,PA,X-ray,,,images,missing.jpg,,,,,,",
]


def _tree(tmp_path):
    root = tmp_path / "covid-chestxray-dataset"
    (root / "images").mkdir(parents=True)
    (root / "lung-masks").mkdir()
    for name in "abcdefg":
        ext = "png" if name == "b" else "jpg"
        Image.new("L", (32, 32), 100).save(root / f"images/{name}.{ext}")
    Image.new("L", (8, 8), 0).save(root / "images/orphan.jpg")
    Image.new("L", (32, 32), 255).save(root / "lung-masks/a.jpg", format="PNG")  # PNG content, .jpg name
    Image.new("L", (32, 32), 255).save(root / "lung-masks/zzz.png")
    (root / "metadata.csv").write_text(HEADER + "\n" + "\n".join(ROWS) + "\n")
    return root


def test_later_schema(tmp_path):
    items = list(get_source("cohen")(_tree(tmp_path)).parse())
    recs = {r.rel: r for r in items if isinstance(r, Record)}
    drops = [d for d in items if isinstance(d, Dropped)]
    assert {k: r.label for k, r in recs.items()} == {
        "images/a.jpg": "covid19", "images/b.png": "pneumonia", "images/c.jpg": "normal", "images/d.jpg": "unknown",
        "images/e.jpg": "other", "images/g.jpg": "pneumonia"}
    a, b, g = recs["images/a.jpg"], recs["images/b.png"], recs["images/g.jpg"]
    assert a.extra["RT_PCR_positive"] == "Y" and a.extra["clinical_notes"] == "notes, quoted"
    assert a.mask_rels == ["lung-masks/a.jpg"] and a.view == "PA"
    assert b.patient_id == "cohen:311a" and b.pediatric is True and b.pediatric_reason == "age<18"
    assert b.view == "AP_supine" and b.license == "CC BY"
    assert g.extra["clinical_notes"] == "fever, cough, dyspnea" and g.license == "CC BY"
    assert recs["images/d.jpg"].view == "L"  # kept by the loader; build-manifest excludes it by view
    reasons = sorted((d.reason, d.rel or d.source_record) for d in drops)
    assert reasons == [
        ("file_without_row", "images/orphan.jpg"), ("mask_without_image", "lung-masks/zzz.png"),
        ("not_xray", "images/f.jpg"), ("not_xray", "metadata.csv#6"), ("row_without_file", "metadata.csv#8")]


def test_labels_of_both_schemas_agree(tmp_path):
    """The same cases written in the June-2020 and the later vocabulary get the same labels."""
    pairs = [("COVID-19", "Pneumonia/Viral/COVID-19"), ("Streptococcus", "Pneumonia/Bacterial/Streptococcus"),
             ("No Finding", "No Finding"), ("Pneumocystis", "Pneumonia/Fungal/Pneumocystis"),
             ("SARS", "Pneumonia/Viral/SARS"), ("Lipoid", "Pneumonia/Lipoid"),
             ("COVID-19, ARDS", "Pneumonia/Viral/COVID-19")]
    labels = {}
    for schema, col in (("june", 0), ("later", 1)):
        root = tmp_path / schema
        (root / "images").mkdir(parents=True)
        lines = ["patientid,finding,view,modality,folder,filename"]
        for i, pair in enumerate(pairs):
            Image.new("L", (16, 16), i).save(root / f"images/{i}.png")
            lines.append(f'{i},"{pair[col]}",PA,X-ray,images,{i}.png')
        (root / "metadata.csv").write_text("\n".join(lines) + "\n")
        recs = [r for r in get_source("cohen")(root).parse() if isinstance(r, Record)]
        labels[schema] = [r.label for r in sorted(recs, key=lambda r: int(r.rel[7:-4]))]
    assert labels["june"] == labels["later"] == ["covid19", "pneumonia", "normal", "pneumonia", "pneumonia", "other",
                                                 "covid19"]
