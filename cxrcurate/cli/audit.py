"""The ``cxrcurate audit`` and ``cxrcurate report`` subcommands; ``register(subparsers)`` adds both.

Nothing heavy is imported here: torch, Captum and matplotlib load when a command runs.

Exit codes of ``audit``: 0 when no check failed, 3 when one did (the table says which; a data check such as leakage
can fail while the verdict on the model is INCONCLUSIVE), 2 for a usage error (from the CLI's error handler).
``audit --self-test``: 0 when every scenario (clean control, full, partial and low-contrast marker on real CXRs)
gets its expected verdict, 3 otherwise. ``report``: 0 when the page was written; it loads no model (no torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .codes import EXIT_CHECK_FAILED


def _methods(value: str) -> tuple[str, ...]:
    from ..audit.overlays import METHODS

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{value!r}: give a comma-separated list of {', '.join(METHODS)}")
    return names


def cmd_audit(args: argparse.Namespace) -> int:
    """Run the audit (or the self-test) and print its table."""
    import json

    from ..errors import CxrcurateError

    if args.self_test:
        from ..audit.selftest import SelfTestOptions, run_self_test

        out = args.out or Path("runs/audit-self-test")
        opts = SelfTestOptions(data_dir=str(args.self_test_data) if args.self_test_data else None)
        opts.epochs = args.self_test_epochs or opts.epochs
        if args.self_test_scenarios:
            opts.scenarios = tuple(s.strip() for s in args.self_test_scenarios.split(","))
        result = run_self_test(out, opts, progress=not args.quiet)
        print(result.table())
        from ..bench.record import selftest_path

        print(f"\nwrote {selftest_path(out)}")
        return 0 if result.ok else EXIT_CHECK_FAILED
    if args.run is None:
        raise CxrcurateError("give a run folder (cxrcurate audit RUN) or --self-test")
    from ..audit.attribution import AttributionOptions
    from ..audit.base import AuditOptions
    from ..audit.core import audit_table, run_audit
    from ..bench.record import AUDIT

    attr = AttributionOptions(methods=args.methods, lime_samples=args.lime_samples, ig_steps=args.ig_steps,
                              layer=args.layer)
    opts = AuditOptions(run_index=args.run_index, lung_source=args.lungs, lung_weights=args.lung_weights,
                        fallback_box=args.fallback_box, region=args.region, attribution=attr,
                        attribution_images=args.max_images or None, probe=not args.no_probe,
                        loso=not args.no_loso, batch_size=args.batch_size, workers=args.workers,
                        manifest=args.manifest, data_root=args.data_root)
    result = run_audit(args.run, opts, progress=not args.quiet and args.format == "text")
    if args.format == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(audit_table(result))
        print(f"\nwrote {Path(args.run) / AUDIT} ({result['seconds']} s)")
    return EXIT_CHECK_FAILED if any(c["status"] == "fail" for c in result["checks"]) else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of a run."""
    from ..report.html import ReportOptions, write_report

    opts = ReportOptions(run_index=args.run_index, methods=args.methods, attributions=not args.no_attributions,
                         manifest=args.manifest, data_root=args.data_root)
    path = write_report(args.run, args.output, opts)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-index", type=int, default=0, metavar="K", help="which seed's run-K folder (default 0)")
    p.add_argument("--manifest", help="the run's manifest, if it moved since the run")
    p.add_argument("--data-root", help="folder the manifest's paths are relative to, if it moved")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``audit`` and ``report`` to the ``cxrcurate`` command's subparsers."""
    au = subparsers.add_parser("audit", help="shortcut audit of a bench run (masked lungs, attributions, source "
                               "probe, leave-one-source-out, demographics, leakage), recorded in the run folder")
    au.add_argument("run", type=Path, nargs="?", help="a `cxrcurate bench` run folder")
    au.add_argument("--self-test", action="store_true",
                    help="plant shortcuts of graded strength in real CXRs (and a clean control), train, audit, and "
                    "check each verdict (minutes on a CPU)")
    au.add_argument("--out", type=Path, help="self-test folder (default runs/audit-self-test)")
    au.add_argument("--self-test-epochs", type=int, default=None, help=argparse.SUPPRESS)
    au.add_argument("--self-test-data", type=Path, metavar="DIR",
                    help="a data folder holding cohen/ (metadata.csv, images/, lung-masks/): real CXRs for the "
                         "self-test (default: the few shipped in the sample, jittered into more)")
    au.add_argument("--self-test-scenarios", help=argparse.SUPPRESS)
    _common(au)
    au.add_argument("--lungs", choices=["auto", "ground-truth", "unet"], default="auto",
                    help="lung masks: the manifest's mask_paths, else the shipped U-Net (auto, default); or only one")
    au.add_argument("--lime-samples", type=int, default=100, help="LIME perturbations per image (default 100)")
    au.add_argument("--lung-weights", help="lung U-Net weights (default: the shipped ones)")
    au.add_argument("--fallback-box", action="store_true",
                    help="give images without a lung mask a central lung-field box (labelled central-box)")
    au.add_argument("--region", choices=["mask", "box"], default="mask",
                    help="black out the lung mask itself (default) or its bounding box")
    au.add_argument("--methods", type=_methods, default=("gradcam", "lime", "ig"),
                    help="attribution methods (default gradcam,lime,ig)")
    au.add_argument("--max-images", type=int, default=100,
                    help="test images attributed, stratified by class (default 100; 0: all)")
    au.add_argument("--ig-steps", type=int, default=32, help="Integrated Gradients steps (default 32)")
    au.add_argument("--layer", help="Grad-CAM layer (module name; default: the last convolutional block)")
    au.add_argument("--no-probe", action="store_true", help="skip the source probe")
    au.add_argument("--no-loso", action="store_true", help="skip leave-one-source-out (it retrains a model per source)")
    au.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    au.add_argument("--workers", type=int, default=0, help="image decoding processes for the source probe")
    au.add_argument("--format", choices=["text", "json"], default="text",
                    help="text verdicts (default) or the audit as JSON")
    au.set_defaults(func=cmd_audit)

    rp = subparsers.add_parser("report", help="one self-contained HTML page about a bench run (renders what the bench "
                               "and the audit recorded; loads no model)")
    rp.add_argument("run", type=Path, help="a `cxrcurate bench` run folder")
    rp.add_argument("-o", "--output", type=Path, help="HTML file to write (default: the report file in the run folder)")
    _common(rp)
    rp.add_argument("--methods", type=_methods, default=("gradcam", "lime"),
                    help="attributions drawn, of those the audit recorded (default gradcam,lime)")
    rp.add_argument("--no-attributions", action="store_true", help="leave the attribution overlays out")
    rp.set_defaults(func=cmd_report)
