"""Training code of rtface (PyTorch): networks, synthetic data, rendering layer, phase 1, export to ONNX.

Not imported by the runtime (``rtface``), which never needs torch. Run ``python -m train`` for the
subcommands.
"""
