"""On-device export: ExecuTorch (XNNPACK) programs of the streaming step, fp32 or int8."""
