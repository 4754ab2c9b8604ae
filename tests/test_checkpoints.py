"""Checkpoints: every official layout loads strictly and is recognised from the file alone;
bad files get clear errors and nothing in them is executed."""

from __future__ import annotations

import json
import os

import pytest
import torch

from fishspine.models import create_model, model_family
from fishspine.models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

from .conftest import MANIFEST_VARIANTS, load_manifest

OFFICIAL_VARIANTS = MANIFEST_VARIANTS or [
    "fishnet99",
    "fishnet150",
    "fishnet201",
    "scnet50",
    "scnet50_v1d",
    "scnet101",
    "scnet101_v1d",
    "spinenet49S",
    "spinenet49",
    "spinenet96",
    "spinenet143",
    "spinenet190",
]


def state_dict_from_manifest(manifest: dict) -> dict[str, torch.Tensor]:
    sd = {}
    for i, (key, shape) in enumerate(manifest["keys"].items()):
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(i, dtype=torch.long)
        else:
            sd[key] = torch.full(shape, float(i % 97) / 97.0)
    return sd


def write_official(variant: str, sd: dict[str, torch.Tensor], folder) -> str:
    """Write `sd` the way the authors' code distributes `variant`."""
    family = model_family(variant)
    if family == "fishnet":  # fishnet150_ckpt.tar: torch.save dict, DataParallel keys
        path = folder / f"{variant}_ckpt.tar"
        torch.save(
            {
                "epoch": 100,
                "arch": variant,
                "best_prec1": 78.1,
                "state_dict": {f"module.{k}": v for k, v in sd.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]},
            },
            path,
        )
    elif family == "scnet":  # scnet50-dc6a7e87.pth: plain state_dict
        path = folder / f"{variant}-0000.pth"
        torch.save(sd, path)
    elif family == "spinenet":  # mmdetection v1.1 detector file
        path = folder / f"retinanet_{variant}.pth"
        detector = {f"backbone.{k}": v for k, v in sd.items()}
        detector["bbox_head.retina_cls.weight"] = torch.zeros(9, 256, 3, 3)
        detector["bbox_head.retina_cls.bias"] = torch.zeros(9)
        torch.save(
            {
                "meta": {"mmdet_version": "1.1.0", "epoch": 72},
                "state_dict": detector,
                "optimizer": {"state": {}, "param_groups": []},
            },
            path,
        )
    else:
        raise AssertionError(family)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("variant", OFFICIAL_VARIANTS)
def test_official_layout_loads_strictly_and_is_recognised(variant, tmp_path):
    manifest = load_manifest(variant)
    sd = state_dict_from_manifest(manifest)
    path = write_official(variant, sd, tmp_path)
    del sd
    ckpt = load_checkpoint(path)
    assert ckpt.variant == variant
    assert ckpt.num_params == manifest["params"]
    ours = ckpt.model.state_dict()
    assert {k: list(v.shape) for k, v in ours.items()} == {k: list(s) for k, s in manifest["keys"].items()}
    # The values really arrived (strict load of what was written).
    some_key = next(k for k in manifest["keys"] if k.endswith("weight"))
    index = list(manifest["keys"]).index(some_key)
    assert torch.all(ours[some_key] == float(index % 97) / 97.0)


@pytest.mark.parametrize(
    "variant,builder", [("resnet50", "resnet50"), ("resnet101", "resnet101"), ("resnext50_32x4d", "resnext50_32x4d")]
)
def test_torchvision_resnet_state_dicts_are_recognised(variant, builder, tmp_path):
    import torchvision

    tv = getattr(torchvision.models, builder)(num_classes=37).eval()
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    ckpt = load_checkpoint(path)
    assert ckpt.variant == variant and ckpt.format == "torchvision state_dict"
    assert ckpt.meta["num_classes"] == 37
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), tv(x))


def test_fishspine_format_round_trip(tmp_path):
    model = create_model("resnet50", width=0.25, num_classes=5).eval()
    path = save_checkpoint(model, tmp_path / "r50.safetensors", trained_on="fishspine-synth v1")
    ckpt = load_checkpoint(path)
    assert ckpt.format == "fishspine" and ckpt.variant == "resnet50"
    assert ckpt.meta["width"] == 0.25 and ckpt.meta["num_classes"] == 5
    assert ckpt.meta["trained_on"] == "fishspine-synth v1"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), model(x))
    assert not list(tmp_path.glob(".*part")), "no temporary file is left behind"


def test_pickle_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="would import or run code.*system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_of_unknown_architecture_names_closest_and_keys(tmp_path):
    import torchvision

    sd = torchvision.models.resnet50().state_dict()
    del sd["layer3.2.conv2.weight"]
    sd["layer5.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "Closest: resnet50" in msg
    assert "layer3.2.conv2.weight" in msg and "layer5.0.conv1.weight" in msg


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"just some text, not weights", "not a checkpoint"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "not a checkpoint"),
    ],
)
def test_non_checkpoints_get_clear_errors(tmp_path, content, match):
    path = tmp_path / "file.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_files_get_clear_errors(tmp_path):
    model = create_model("resnet50", width=0.25)
    full = tmp_path / "full.pth"
    torch.save(model.state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut)
    st = save_checkpoint(model, tmp_path / "m.safetensors")
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut_st)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


def test_pipe_and_device_are_refused_without_reading(tmp_path):
    import threading

    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)
    (tmp_path / "zeros.pth").symlink_to("/dev/zero")
    for path in (fifo, tmp_path / "zeros.pth"):
        outcome: list = []

        def read(path=path, outcome=outcome):
            outcome.append(pytest.raises(CheckpointError, load_checkpoint, path))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(20)
        assert not reader.is_alive(), f"load_checkpoint({path.name}) hangs"
        assert "not a regular file" in str(outcome[0].value)


def test_dict_without_tensors_is_not_a_state_dict(tmp_path):
    path = tmp_path / "cfg.pth"
    torch.save({"lr": 0.1, "epochs": 3}, path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_checkpoint(path)


def test_saved_files_get_ordinary_permissions(tmp_path):
    path = save_checkpoint(create_model("resnet50", width=0.25), tmp_path / "m.safetensors")
    assert path.stat().st_mode & 0o644 == 0o644


# --------------------------------------------------------------------------------------------
# fishspine files whose header lies: refused before any model is built


def write_with_header(path, header, tensors: dict[str, torch.Tensor] | None = None):
    """A safetensors file with `header` (a JSON-able value, or raw text) under the fishspine key."""
    from safetensors.torch import save_file

    if tensors is None:
        tensors = create_model("resnet50", width=0.25, num_classes=5).state_dict()
    text = header if isinstance(header, str) else json.dumps(header)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"fishspine": text})
    return path


def good_header(**changes) -> dict:
    header = {
        "format_version": 1,
        "family": "resnet",
        "variant": "resnet50",
        "config": {"num_classes": 5, "width": 0.25},
        "width": 0.25,
        "num_classes": 5,
        "trained_on": "",
        "params": 1,
    }
    header.update(changes)
    return header


@pytest.fixture
def no_real_model_built(monkeypatch):
    """Fail the test if a model is built anywhere but on the meta device (which allocates nothing)."""
    from fishspine.models import checkpoints

    real = checkpoints.create_model

    def meta_only(name, **kwargs):
        assert torch.empty(0).device.type == "meta", f"built a real {name} {kwargs} from a header not yet checked"
        return real(name, **kwargs)

    monkeypatch.setattr(checkpoints, "create_model", meta_only)


@pytest.mark.parametrize(
    "header_text,match",
    [
        ('["resnet50", 0.25]', "header is a JSON list, not an object"),
        ('"resnet50"', "header is a JSON string, not an object"),
        ("42", "header is a JSON number, not an object"),
        ("{}", "names no variant"),
    ],
)
def test_header_that_is_not_an_object_is_refused(tmp_path, header_text, match, no_real_model_built):
    path = write_with_header(tmp_path / "m.safetensors", header_text)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


@pytest.mark.parametrize("width", [-1, 0, float("nan"), float("inf"), 9, 1e9, "0.25", True, None])
def test_header_width_out_of_range_is_refused(tmp_path, width, no_real_model_built):
    header = good_header(config={"num_classes": 5, "width": width}, width=width)
    path = write_with_header(tmp_path / "m.safetensors", header)
    with pytest.raises(CheckpointError, match=r"width .* must be a number in \(0, 8\]"):
        load_checkpoint(path)


@pytest.mark.parametrize("num_classes", [600_000, 1e12, -3, 2.5, "10", True])
def test_header_num_classes_out_of_range_is_refused(tmp_path, num_classes, no_real_model_built):
    header = good_header(config={"num_classes": num_classes, "width": 0.25}, num_classes=num_classes)
    path = write_with_header(tmp_path / "m.safetensors", header)
    with pytest.raises(CheckpointError, match=r"num_classes .* must be a whole number from 1 to 100000"):
        load_checkpoint(path)


@pytest.mark.parametrize("digits", [400, 5000])
def test_header_with_enormous_integers_is_refused(tmp_path, digits, no_real_model_built):
    huge = "9" * digits  # past float range; past Python's int parsing limit at 5000
    text = json.dumps(good_header()).replace('"width": 0.25', f'"width": {huge}')
    path = write_with_header(tmp_path / "m.safetensors", text)
    with pytest.raises(CheckpointError, match="width|not valid JSON"):
        load_checkpoint(path)


def test_header_top_level_fields_are_checked_too(tmp_path, no_real_model_built):
    path = write_with_header(tmp_path / "m.safetensors", good_header(num_classes=600_000))
    with pytest.raises(CheckpointError, match="num_classes"):
        load_checkpoint(path)
    path = write_with_header(tmp_path / "m.safetensors", good_header(width=0.5))
    with pytest.raises(CheckpointError, match=r"width 0.5, which disagrees with its config \(width 0.25\)"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"variant": "resnet9000"}, "variant 'resnet9000', which this version does not know"),
        ({"variant": ["resnet50"]}, "variant"),
        ({"config": [0.25, 5]}, "config is a JSON list, not an object"),
        ({"config": {"width": 0.25, "num_classes": 5, "depth": 50}}, "depth"),
        ({"config": {"width": 0.25, "bn_eps": float("nan")}, "num_classes": None, "variant": "spinenet49"}, "bn_eps"),
        ({"config": {"width": 0.25, "num_classes": 5}, "num_classes": 5, "variant": "spinenet49"}, "num_classes"),
        ({"format_version": 99}, "newer fishspine"),
        ({"format_version": "one"}, "format_version"),
    ],
)
def test_header_with_unknown_or_bad_fields_is_refused(tmp_path, changes, match, no_real_model_built):
    path = write_with_header(tmp_path / "m.safetensors", good_header(**changes))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_weight_of_the_wrong_shape_names_the_key(tmp_path, no_real_model_built):
    tensors = create_model("resnet50", width=0.25, num_classes=5).state_dict()
    tensors["layer2.0.conv1.weight"] = torch.zeros(7, 3, 1, 1)
    path = write_with_header(tmp_path / "m.safetensors", good_header(), tensors)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "resnet50" in msg and "1 keys of the wrong shape" in msg
    assert "layer2.0.conv1.weight [7, 3, 1, 1]" in msg


def test_header_naming_the_wrong_variant_points_to_the_one_that_fits(tmp_path, no_real_model_built):
    tensors = create_model("resnext50_32x4d", width=0.25, num_classes=5).state_dict()
    path = write_with_header(tmp_path / "m.safetensors", good_header(), tensors)
    with pytest.raises(CheckpointError, match="Closest: resnext50_32x4d"):
        load_checkpoint(path)


def test_header_with_a_huge_classifier_is_refused_without_building_it(tmp_path, no_real_model_built):
    # Within the num_classes bound, but the file's classifier is 5 wide: refused from the shapes alone.
    path = write_with_header(
        tmp_path / "m.safetensors",
        good_header(config={"num_classes": 100_000, "width": 8}, num_classes=100_000, width=8),
    )
    with pytest.raises(CheckpointError, match="fc.weight"):
        load_checkpoint(path)


def test_headless_and_classifier_free_models_round_trip(tmp_path):
    for variant, kwargs in (("resnet50", {"num_classes": 0}), ("spinenet49S", {})):
        model = create_model(variant, width=0.25, **kwargs).eval()
        ckpt = load_checkpoint(save_checkpoint(model, tmp_path / f"{variant}.safetensors"))
        assert ckpt.variant == variant and ckpt.model.config == model.config
