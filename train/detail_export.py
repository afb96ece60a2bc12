"""Export the detail FineNet (:mod:`train.detail_net`) to ONNX and enter it in a weights folder's manifest.

``python -m train.detail_export CKPT --weights DIR`` writes ``DIR/fine_d.onnx`` (float32; inputs ``image``
(N,3,H,W) RGB [0, 1], ``coarse_depth`` and ``mask`` (N,1,H,W); output ``relief`` (N,1,H,W) in px of the map,
which the runtime adds to the coarse depth in float32; batch, height and width dynamic), checks it against
PyTorch at two resolutions, and replaces the manifest's ``fine`` entry (``"resolution": "any"``, the
``multiple`` the size must be, the checkpoint's provenance). The manifest's other entries are kept; an INT8
copy of the previous FineNet is dropped (``python -m train.detail_quantize`` makes the new one).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
from pathlib import Path

import numpy as np
import torch

from .detail_net import MULTIPLE, FineNet

FILE = "fine_d.onnx"


class _Export(torch.nn.Module):
    def __init__(self, net: FineNet):
        super().__init__()
        self.net = net

    def forward(self, image, coarse_depth, mask):
        return self.net.relief(image, coarse_depth, mask)


def export_onnx(net: FineNet, path: Path, opset: int = 17) -> float:
    """Write the ONNX file; returns the largest difference to PyTorch at 128 and 320 px, batch 2, relative to
    the largest relief (at least 1 px)."""
    import onnxruntime as ort

    net = net.eval()
    # the export traces a copy: tracing runs the module in training mode, which would move the batch-norm
    # statistics of ``net`` itself
    export = _Export(copy.deepcopy(net))
    x = (torch.rand(1, 3, 128, 128), torch.rand(1, 1, 128, 128) * 40, torch.ones(1, 1, 128, 128))
    names = ["image", "coarse_depth", "mask", "relief"]
    torch.onnx.export(export, x, str(path), input_names=names[:3], output_names=names[3:], opset_version=opset,
                      dynamic_axes={k: {0: "n", 2: "height", 3: "width"} for k in names}, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    for d in (128, 320):
        yy, xx = torch.meshgrid(torch.arange(d), torch.arange(d), indexing="ij")
        r2 = ((xx - d / 2) ** 2 + (yy - d / 2) ** 2).float()
        m = (r2 < (0.4 * d) ** 2).float()[None, None].repeat(2, 1, 1, 1)
        z = (torch.sqrt(torch.clamp((0.45 * d) ** 2 - r2, min=0)) * m[0]).repeat(2, 1, 1, 1)
        img = torch.rand(2, 3, d, d, generator=g)
        with torch.no_grad():
            ref = net.relief(img, z, m).numpy()
        got = sess.run(None, {"image": img.numpy(), "coarse_depth": z.numpy(), "mask": m.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max()) / max(1.0, float(np.abs(ref).max())))
    return worst


def main(argv: list[str] | None = None) -> int:
    from rtface.assets import sha256_file

    from .detail_phase1 import load

    p = argparse.ArgumentParser(prog="python -m train.detail_export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--weights", required=True, type=Path, help="weights folder with manifest.json")
    p.add_argument("--note", default="", help="provenance: what the checkpoint was trained on, how long")
    a = p.parse_args(argv)
    net, ck = load(a.checkpoint)
    out = a.weights / FILE
    diff = export_onnx(net, out)
    if diff > 1e-3:
        raise SystemExit(f"ONNX and PyTorch differ by {diff:.2e} of the relief: not exported")
    man_path = a.weights / "manifest.json"
    man = json.loads(man_path.read_text())
    old = man["networks"].get("fine", {})
    for f in {old.get("file"), (old.get("int8") or {}).get("file")} - {None, FILE}:
        if (a.weights / f).exists():
            (a.weights / f).unlink()
    man["networks"]["fine"] = {
        "file": FILE, "sha256": sha256_file(out), "resolution": "any", "multiple": MULTIPLE,
        "output": "relief", "parity_max_abs_diff": diff,
        "training": {"checkpoint": a.checkpoint.name, "checkpoint_sha256": sha256_file(a.checkpoint),
                     "steps": int(ck["step"]), "widths": list(ck["widths"]), "context": list(ck["context"]),
                     "note": a.note, "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
    }
    man_path.write_text(json.dumps(man, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, parity {diff:.1e}) and {man_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
