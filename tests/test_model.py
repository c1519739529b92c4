"""``srdc.model``: backbone output dimensions, the head's shapes, the centres, feature spaces and weight files."""

import pytest
import torch
from torch import nn

from srdc.errors import SRDCInputError
from srdc.model import Centres, SRDCNet, batchnorm_statistics_of, build_backbone, feature_space_dims, is_pretrained


@pytest.mark.parametrize("name, shape, dim", [
    ("digits_cnn", (2, 3, 28, 28), 800),
    ("resnet18", (2, 3, 64, 64), 512),
    ("identity", (2, 37), 37),
])
def test_backbones_map_inputs_to_their_stated_dimension(name, shape, dim):
    torch.manual_seed(0)
    backbone, out_dim = build_backbone(name, weights="none", in_dim=37)
    assert out_dim == dim
    with torch.no_grad():
        assert backbone.eval()(torch.randn(shape)).flatten(1).shape == (2, dim)


def test_identity_needs_the_input_dimension_and_unknown_names_list_the_choices():
    with pytest.raises(SRDCInputError, match="backbone 'identity' needs the feature dimension"):
        build_backbone("identity", "none")
    with pytest.raises(SRDCInputError, match="unknown backbone 'vgg16'; choose one of: resnet18, .*identity"):
        build_backbone("vgg16", "none")


def test_head_gives_pooled_bottleneck_and_logits_shapes():
    torch.manual_seed(0)
    backbone, dim = build_backbone("identity", "none", in_dim=20)
    net = SRDCNet(backbone, dim, num_classes=7, bottleneck_dim=16)
    out = net(torch.randn(5, 20))
    assert (out.pooled.shape, out.bottleneck.shape, out.logits.shape) == ((5, 20), (5, 16), (5, 7))
    assert (out.bottleneck >= 0).all()  # Linear + BatchNorm + ReLU
    assert [p.shape for p in net.new_layers()] == [(16, 20), (16,), (16,), (16,), (7, 16), (7,)]


def test_centres_start_at_zero_and_reset_overwrites_in_place():
    centres = Centres({"pooled": 6, "bottleneck": 4}, num_classes=3)
    assert sorted(centres.spaces) == ["bottleneck", "pooled"]
    assert centres.mu["pooled"].shape == (3, 6) and not centres.mu["bottleneck"].any()
    before = centres.mu["pooled"]
    values = torch.arange(18.0).reshape(3, 6)
    centres.reset({"pooled": values})
    assert centres.mu["pooled"] is before and centres.mu["pooled"].requires_grad
    assert torch.equal(centres.mu["pooled"].detach(), values) and not centres.mu["bottleneck"].any()


@pytest.mark.parametrize("spaces, expected", [
    ("both", {"pooled": 2048, "bottleneck": 512}),
    ("pooled", {"pooled": 2048}),
    ("bottleneck", {"bottleneck": 512}),
])
def test_feature_space_dims(spaces, expected):
    assert feature_space_dims(spaces, pooled_dim=2048, bottleneck_dim=512) == expected


def test_a_missing_weights_file_names_the_path_and_the_alternative(tmp_path):
    missing = tmp_path / "resnet18.pth"
    with pytest.raises(SRDCInputError, match=f"weights file {missing} does not exist; pass an existing .pth file "
                                             "or --weights none"):
        build_backbone("resnet18", str(missing))


def test_a_weights_file_is_loaded_into_the_backbone(tmp_path):
    torch.manual_seed(1)
    source, _ = build_backbone("resnet18", "none")
    path = tmp_path / "weights.pth"
    torch.save({**source.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}, path)
    loaded, dim = build_backbone("resnet18", str(path))
    assert dim == 512
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)


@pytest.mark.parametrize("name, weights, expected", [
    ("resnet50", "imagenet", True),
    ("resnet18", "/some/file.pth", True),
    ("resnet50", "none", False),
    ("digits_cnn", "imagenet", False),
    ("identity", "imagenet", False),
])
def test_is_pretrained_only_for_resnets_with_weights(name, weights, expected):
    assert is_pretrained(name, weights) is expected


def test_batchnorm_statistics_of_normalises_with_the_batches_then_puts_the_running_ones_back():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.train()
    for _ in range(5):  # running statistics of other data
        model(torch.randn(8, 3) * 3 + 1)
    norm = model[1]
    before = {key: getattr(norm, key).clone() for key in ("running_mean", "running_var", "num_batches_tracked")}
    data = torch.randn(12, 3)
    batches = [data[:4], data[4:8], data[8:], data[:1]]  # a batch of one sample is skipped
    with torch.no_grad():
        hidden = model[0](data)
    with batchnorm_statistics_of(model, batches):
        assert not model.training and not norm.training
        assert torch.allclose(norm.running_mean, hidden.mean(0), atol=1e-6)  # equal batches: the mean of means
        expected_var = torch.stack([hidden[i:i + 4].var(0) for i in (0, 4, 8)]).mean(0)  # unbiased, per batch
        assert torch.allclose(norm.running_var, expected_var, atol=1e-6)
        with torch.no_grad():
            out = model(data)
        assert torch.allclose(out.mean(0), torch.zeros(4), atol=1e-5)  # normalised by the data's own statistics
    assert model.training and norm.momentum == 0.1
    assert all(torch.equal(getattr(norm, key), value) for key, value in before.items())



def test_the_uniform_head_batchnorm_init_is_pytorch_1_1s_drawn_in_its_constructors_order():
    torch.manual_seed(0)
    net = SRDCNet(nn.Identity(), 8, 3, bottleneck_dim=4, bn_init="uniform")
    torch.manual_seed(0)  # PyTorch <= 1.1: Linear, then BatchNorm1d drawing its weight from U(0, 1), then Linear
    linear = nn.Linear(8, 4)
    scale = torch.empty(4).uniform_(0, 1)
    classifier = nn.Linear(4, 3)
    assert torch.equal(net.bottleneck[0].weight, linear.weight)
    assert torch.equal(net.bottleneck[1].weight.detach(), scale) and bool((scale < 1).all()) and bool((scale > 0).all())
    assert torch.equal(net.bottleneck[1].bias.detach(), torch.zeros(4))
    assert torch.equal(net.classifier.weight, classifier.weight)
    assert torch.equal(SRDCNet(nn.Identity(), 8, 3, bottleneck_dim=4).bottleneck[1].weight.detach(), torch.ones(4))
