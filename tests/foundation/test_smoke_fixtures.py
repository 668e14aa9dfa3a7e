import torch


def test_tiny_models_forward(tiny_family_dir):
    from downsize.models.refs import load_model

    model, tok = load_model(str(tiny_family_dir))
    ids = tok("def f(x):\n    return x\n", return_tensors="pt").input_ids
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    assert torch.isfinite(logits).all()
