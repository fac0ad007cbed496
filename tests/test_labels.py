import pytest

from cxrcurate.labels import label_from_finding, normalize_sex, normalize_view, parse_age, pediatric_from_age


@pytest.mark.parametrize("finding,label", [
    # June-2020 Cohen schema
    ("COVID-19", "covid19"), ("COVID-19, ARDS", "covid19"), ("Streptococcus", "pneumonia"),
    ("No Finding", "normal"), ("SARS", "pneumonia"), ("Pneumocystis", "pneumonia"), ("Lipoid", "other"),
    ("ARDS", "other"), ("Mycoplasma Bacterial Pneumonia", "pneumonia"), ("E.Coli", "pneumonia"),
    # later hierarchical schema
    ("Pneumonia/Viral/COVID-19", "covid19"), ("Pneumonia/Bacterial/Streptococcus", "pneumonia"),
    ("Pneumonia/Fungal/Pneumocystis", "pneumonia"), ("Pneumonia/Lipoid", "other"), ("todo", "unknown"),
    ("Pneumonia", "pneumonia"), ("Tuberculosis", "other"),
    # blanks and agchung spellings
    (None, "unknown"), ("", "unknown"), (float("nan"), "unknown"), ("No finding", "normal"),
])
def test_findings_map_to_labels(finding, label):
    assert label_from_finding(finding) == label


def test_whole_tokens_not_substrings(caplog):
    # "Spinal Tuberculosis" contains "Tuberculosis" but is not the lung finding; "Pneumonia-like" is not pneumonia
    assert label_from_finding("Spinal Tuberculosis") == "unknown"
    assert label_from_finding("Pneumonia-like shadow") == "unknown"
    assert "no label mapping" in caplog.text
    assert label_from_finding("Non-COVID-19 pneumonia") == "unknown"  # not the covid token either


@pytest.mark.parametrize("raw,view", [("PA", "PA"), ("AP", "AP"), ("AP Supine", "AP_supine"), ("APS", "AP_supine"),
                                      ("AP Erect", "AP"), ("AP erect", "AP"), ("L", "L"), ("ap", "AP"), ("pa", "PA"),
                                      ("Axial", "unknown"), ("Coronal", "unknown"), (None, "unknown")])
def test_views(raw, view):
    assert normalize_view(raw) == view


@pytest.mark.parametrize("raw,age", [("47", 47.0), ("047Y", 47.0), ("1.5", 1.5), ("50+", 50.0), ("early 40s", 42.0),
                                     ("mid 50s", 55.0), ("late 60s", 68.0), ("9 months", 0.75), ("35yrs", 35.0),
                                     ("411", None), ("unknown", None), (None, None), (0.25, 0.25), ("-3", None)])
def test_ages(raw, age):
    assert parse_age(raw) == age


def test_pediatric_and_sex():
    assert pediatric_from_age(17.9) == (True, "age<18")
    assert pediatric_from_age(18) == (False, "age>=18")
    assert pediatric_from_age(None) == (None, None)
    assert [normalize_sex(s) for s in ["M", "female", "w", "f", "x", None]] == ["M", "F", "F", "F", None, None]
