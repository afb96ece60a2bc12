"""``python -m train``: list the training subcommands (each is ``python -m train.<name> --help``)."""

from __future__ import annotations

import sys

COMMANDS = {
    "phase1": "supervised training on synthetic faces: CoarseNet (geometry loss) + FineNet pretraining",
    "export": "export a checkpoint (or --random-init nets) to ONNX + rtface/weights/manifest.json",
}
OPTIONAL = {  # listed when the module is present
    "phase2": "unsupervised shape-from-shading fine-tuning on real faces",
    "realdata": "prepare the real-face data set used by phase 2",
    "labeled": "fit the face model to the hand-annotated real faces (the real-face CoarseNet's labels)",
    "profiling": "large-pose copies of the 300-W training faces",
    "coarse_real": "train the CoarseNet on real and synthetic faces",
    "combine": "the CoarseNet of one checkpoint with the FineNet of another",
    "average": "the weighted mean of FineNets of one lineage",
    "calibrate": "a FineNet's output filter (blur, gain) chosen on the detail sets' validation seed",
    "quantize": "INT8 copies of the shipped networks, calibrated on real crops",
    "detail_data": "the detail FineNet's synthetic faces at their own resolution, as shards",
    "detail_phase1": "the detail FineNet (the released one): supervised on those shards",
    "detail_calibrate": "the detail FineNet's output gain, chosen in the frame on a validation draw",
    "detail_export": "the detail FineNet to ONNX, entered in a weights folder's manifest",
}
_here = __import__("pathlib").Path(__file__).resolve().parent
COMMANDS.update({k: v for k, v in OPTIONAL.items() if (_here / f"{k}.py").is_file()})


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        import importlib

        return importlib.import_module(f"train.{args[0]}").main(args[1:]) or 0
    print("usage: python -m train <command> [options]   (or python -m train.<command>)\n\ncommands:")
    for name, what in COMMANDS.items():
        print(f"  {name:11s} {what}")
    print("\nvariants: s (S=128, real time on a CPU), paper (S=200, paper-sized); see train/config.py")
    return 0 if not args or args[0] in {"-h", "--help"} else 2


if __name__ == "__main__":
    sys.exit(main())
