"""from_torch and from_arrays against PyTorch's own forward pass (conv2d)."""

import numpy as np
import pytest
import torch

nn = torch.nn

import pixelmix as pm
from pixelmix.networks import from_arrays, from_torch


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(5, 8, 1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 6, 1), nn.LeakyReLU(0.2)),
        nn.Dropout(0.5),
        nn.Conv2d(6, 4, 1, bias=False),
        nn.Tanh(),
        nn.Conv2d(4, 2, 1),
        nn.Sigmoid(),
    )
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.uniform_(0.5, 1.5)
    return model.eval()


def test_matches_torch_float64(rng):
    model = _model().double()
    x = rng.normal(size=(2, 5, 9, 11))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    net = pm.from_torch(model)
    assert [type(s).__name__ for s in net.steps].count("Mixer") == 4  # BatchNorm folded
    np.testing.assert_allclose(net(x, channel_axis=1), ref, atol=1e-12)


def test_matches_torch_conv2d_float32(rng):
    conv = nn.Conv2d(6, 3, 1)
    x = rng.random((1, 6, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = torch.nn.functional.conv2d(torch.from_numpy(x), conv.weight, conv.bias).numpy()
    out = pm.from_torch(conv)(x, channel_axis=1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_linear_layers_channels_last(rng):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    x = rng.normal(size=(7, 8, 4))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pm.from_torch(model)(x), ref, atol=1e-12)


def test_state_dict_and_from_arrays_agree(rng):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 5, 1), nn.ReLU(), nn.Conv2d(5, 2, 1)).double()
    from_state = from_torch(model.state_dict())
    assert from_state == from_torch(model)
    layers = [(p.detach().numpy(), q.detach().numpy()) for p, q in
              [(model[0].weight, model[0].bias), (model[2].weight, model[2].bias)]]
    assert from_arrays(layers, activation="relu") == from_state
    assert from_arrays([layers[0], "relu", layers[1]]) == from_state
    x = rng.normal(size=(3, 6, 6))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(from_state(x, channel_axis=0), ref, atol=1e-12)


def test_save_and_load(tmp_path):
    net = pm.from_torch(_model())
    net.save(tmp_path / "net.json")
    back = pm.load(tmp_path / "net.json")
    assert back == net
    x = np.random.default_rng(0).normal(size=(5, 4, 4))
    np.testing.assert_array_equal(back(x, channel_axis=0), net(x, channel_axis=0))


def test_unsupported_layers():
    with pytest.raises(ValueError, match="only 1x1 kernels"):
        pm.from_torch(nn.Conv2d(3, 2, 3))
    with pytest.raises(ValueError, match="only 1x1 kernels"):
        pm.from_torch(nn.Conv2d(3, 2, 1, stride=2))
    with pytest.raises(ValueError, match="MaxPool2d is not supported"):
        pm.from_torch(nn.Sequential(nn.Conv2d(3, 2, 1), nn.MaxPool2d(2)))
    with pytest.raises(ValueError, match="training mode"):
        pm.from_torch(nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2)))
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        pm.from_torch(nn.ReLU())
    with pytest.raises(ValueError, match="unsupported activation"):
        from_arrays([(np.ones((2, 3)), None), "gelu"])
    with pytest.raises(TypeError, match="torch.nn.Module or a state dict"):
        pm.from_torch(np.ones(3))
    with pytest.raises(ValueError, match="expects 4 channels but the right one produces 3"):
        from_arrays([(np.ones((3, 2)), None), (np.ones((1, 4)), None)])
