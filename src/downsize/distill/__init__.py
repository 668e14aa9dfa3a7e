"""Distillation: losses, teachers (online, offline top-k cache, on-policy), vocabulary alignment, SFT.

    >>> from downsize.distill import distill, DistillConfig, StudentSpec
    >>> distill("zoo:coder-teacher", StudentSpec(overrides={"num_hidden_layers": 4, "hidden_size": 192}),
    ...         "zoo:stdlib", DistillConfig(loss="fkl", steps=200), "runs/student")
"""
