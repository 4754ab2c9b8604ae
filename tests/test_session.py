"""Session files are checked key by key before the app applies any of them (app/components/session.py)."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fishspine.analysis.options import (
    CACHE_MB_RANGE,
    CAM_CMAPS,
    CAM_METHODS,
    COCO_IOU_TYPES,
    COCO_METRICS,
    GALLERY_ROWS_RANGE,
    GRADIENT_WHICH,
    GRAPH_COLOR_BY,
    IMAGE_SIZE_RANGE,
    INPUT_METHODS,
    NORMALISATIONS,
    PRECISIONS,
    REDUCTIONS,
    SCALINGS,
)
from fishspine.app.components.session import (
    MAX_LABEL,
    SETTINGS_SCHEMA,
    ValidSession,
    validate_session,
)
from fishspine.app.components.state import AppState, ImageEntry, ModelEntry, Settings, read_session
from tests.bad_inputs import SESSION_CHANGES, SESSION_IGNORED, valid_session, write_bad_sessions


def test_every_settings_field_has_a_rule():
    assert set(SETTINGS_SCHEMA) == {f.name for f in fields(Settings)}


def test_the_default_settings_pass():
    from dataclasses import asdict

    session, warnings = validate_session(dict(valid_session(), settings=asdict(Settings())))
    assert session.settings == asdict(Settings()) and not warnings


@pytest.fixture(scope="module")
def bad_sessions(tmp_path_factory):
    return write_bad_sessions(tmp_path_factory.mktemp("sessions"))


@pytest.mark.parametrize(
    "case",
    [
        *SESSION_CHANGES,
        "session_nan_literal",
        "session_huge_integer",
        "session_deep_nesting",
        "session_fifo",
        "session_folder",
        "session_dev_zero_link",
        "session_empty",
        "session_missing",
        "session_binary",
    ],
)
def test_every_bad_session_file_is_refused_in_one_line(bad_sessions, case):
    with pytest.raises(ValueError) as info:
        read_session(bad_sessions[case])
    message = str(info.value)
    assert bad_sessions[case].name in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize(
    "change,needle",
    [
        (
            ("settings", "device", "meta"),
            "session key 'settings.device' is 'meta'; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N'",
        ),
        (("settings", "image_size", "384"), "'settings.image_size' is '384'; allowed: an integer from 32 to 4096"),
        (("settings", "image_size", True), "'settings.image_size' is True"),
        (("settings", "precision", "fp8"), "allowed: 'float32', 'bf16'"),
        (("settings", "class_index", -1), "null (the top prediction) or an integer from 0"),
        (("settings", "gallery_rows", 0), "'settings.gallery_rows' is 0; allowed: an integer from 1 to 64"),
        (("settings", "scaling", "zscore"), "'settings.scaling' is 'zscore'; allowed: 'percentile', 'minmax'"),
        (("settings", "cam_cmap", "rainbow"), "allowed: 'inferno', 'viridis', 'jet'"),
        (("settings", "coco_results", {"a": 1}), "'settings.coco_results.a' is 1; allowed: a file path"),
        (("settings", "cam_alpha", 1.5), "'settings.cam_alpha' is 1.5; allowed: a number from 0 to 1"),
        (("settings", "cam_alpha", "0.5"), "'settings.cam_alpha' is '0.5'; allowed: a number from 0 to 1"),
        (("settings", "cam_blocks", {"r50": 3}), "'settings.cam_blocks.r50' is 3; allowed: a string"),
        (("settings", "cam_blocks", ["layer4.2"]), "'settings.cam_blocks' is a list of 1; allowed: an object"),
        (("selected_image", None, "0"), "'selected_image' is '0'"),
    ],
)
def test_messages_name_the_key_the_value_and_what_is_allowed(change, needle):
    data = valid_session()
    key, sub, value = change
    if sub is None:
        data[key] = value
    else:
        data[key][sub] = value
    with pytest.raises(ValueError) as info:
        validate_session(data)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "source,needle",
    [
        ("zoo:notamodel:1.0", "no zoo model 'notamodel'"),
        ("zoo:resnet50:0", "width '0' is not a number in (0, 8]"),
        ("zoo:resnet50:nan", "width 'nan'"),
        ("zoo:resnet50:inf", "width 'inf'"),
        ("zoo:resnet50:9", "width '9'"),
        ("zoo:resnet50", "not of the form zoo:NAME:WIDTH"),
        ("", "'models[0].source' is ''"),
    ],
)
def test_model_sources_are_checked(source, needle):
    data = valid_session()
    data["models"][0]["source"] = source
    with pytest.raises(ValueError, match="models\\[0\\]") as info:
        validate_session(data)
    assert needle in str(info.value)


@pytest.mark.parametrize("case", list(SESSION_IGNORED))
def test_unknown_keys_are_ignored_with_a_warning(bad_sessions, case):
    session, warnings = validate_session(SESSION_IGNORED[case](valid_session()))
    assert len(warnings) == 1 and "ignored" in warnings[0]
    assert set(session.settings) <= {f.name for f in fields(Settings)}


def test_a_session_cannot_set_attributes_that_are_not_settings(tmp_path):
    """open_session used to setattr any key: `__class__` replaced the settings object's class."""
    state = AppState()
    path = tmp_path / "s.fishspine"
    path.write_text(json.dumps(SESSION_IGNORED["session_dunder_class"](valid_session())))
    session, warnings = read_session(path)
    state.update_settings(**session.settings)
    assert type(state.settings) is Settings and warnings


# ---------------------------------------------------------------------------------------- Hypothesis


def _nested(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30), _nested, max_leaves=20
)


def _check(data) -> None:
    try:
        session, warnings = validate_session(data)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(session, ValidSession) and all(isinstance(w, str) for w in warnings)
    assert set(session.settings) <= set(SETTINGS_SCHEMA)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_json_value_is_a_session_or_a_value_error(data):
    _check(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    section=st.sampled_from(["top", "settings", "model"]),
    key=st.sampled_from(
        [
            *SETTINGS_SCHEMA,
            "fishspine_session",
            "models",
            "images",
            "selected_image",
            "settings",
            "label",
            "source",
            "__class__",
        ]
    ),
    value=JSON,
)
def test_any_value_under_any_key_is_a_session_or_a_value_error(section, key, value):
    data = valid_session()
    target = {"top": data, "settings": data["settings"], "model": data["models"][0]}[section]
    target[key] = value
    _check(data)


def _zoo_sources():
    from fishspine.models import list_models

    names = list_models()
    widths = st.floats(min_value=0.001, max_value=8.0, allow_nan=False).filter(lambda w: w > 0)
    return st.builds(lambda n, w: f"zoo:{n}:{w!r}", st.sampled_from(names), widths)


PATHS = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(lambda s: s.strip())
LABELS = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=MAX_LABEL)
VALID_SETTINGS = st.fixed_dictionaries(
    {
        "device": st.sampled_from(["auto", "cpu", "cuda"]) | st.integers(0, 999).map(lambda i: f"cuda:{i}"),
        "precision": st.sampled_from(PRECISIONS),
        "image_size": st.integers(*IMAGE_SIZE_RANGE),
        "reduction": st.sampled_from(REDUCTIONS),
        "normalisation": st.sampled_from(NORMALISATIONS),
        "cam_method": st.sampled_from(CAM_METHODS + INPUT_METHODS),
        "scaling": st.sampled_from(SCALINGS),
        "cam_cmap": st.sampled_from(CAM_CMAPS),
        "cam_alpha": st.floats(0.0, 1.0),
        "cam_blocks": st.dictionaries(LABELS, LABELS, max_size=4),
        "class_index": st.none() | st.integers(0, 100_000),
        "gradient_which": st.sampled_from(GRADIENT_WHICH),
        "gallery_rows": st.integers(*GALLERY_ROWS_RANGE),
        "graph_color_by": st.sampled_from(GRAPH_COLOR_BY),
        "coco_gt": PATHS | st.just(""),
        "coco_results": st.dictionaries(LABELS, PATHS, max_size=4),
        "coco_baseline": LABELS,
        "coco_iou_type": st.sampled_from(COCO_IOU_TYPES),
        "coco_metrics": st.sampled_from(COCO_METRICS),
        "coco_images": PATHS | st.just(""),
        "study_folder": PATHS | st.just(""),
        "cache_mb": st.integers(*CACHE_MB_RANGE),
    }
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    settings_=VALID_SETTINGS,
    models=st.lists(st.tuples(LABELS, _zoo_sources() | PATHS), max_size=5),
    images=st.lists(PATHS, max_size=5),
    data=st.data(),
)
def test_every_valid_session_round_trips_through_save_and_read(tmp_path_factory, settings_, models, images, data):
    state = AppState()
    state.update_settings(**settings_)
    state.models = [ModelEntry(label, None, "v", "f", 0, source, trained=False) for label, source in models]
    state.images = [ImageEntry("x", p, None) for p in images]
    state.selected_image = data.draw(st.integers(-1, max(len(images) - 1, 0)))
    path = state.save_session(tmp_path_factory.mktemp("rt") / "s.fishspine")
    session, warnings = read_session(path)
    assert not warnings
    assert session.settings == settings_
    assert [(m.label, m.source) for m in session.models] == models
    assert session.images == images and session.selected_image == state.selected_image
    assert validate_session(session.to_json())[0] == session
    assert not any(isinstance(v, float) and math.isnan(v) for v in session.settings.values())


def test_the_cam_opacity_and_blocks_per_model_round_trip(tmp_path):
    state = AppState()
    state.update_settings(cam_alpha=0.35, cam_blocks={"r50": "layer3.1", "f99": "score"})
    session, warnings = read_session(state.save_session(tmp_path / "s.fishspine"))
    assert not warnings
    assert session.settings["cam_alpha"] == 0.35
    assert session.settings["cam_blocks"] == {"r50": "layer3.1", "f99": "score"}


@pytest.mark.parametrize("method", INPUT_METHODS)
def test_an_input_attribution_chosen_in_the_cam_view_is_restored(tmp_path, method):
    state = AppState()
    state.update_settings(cam_method=method)
    session, warnings = read_session(state.save_session(tmp_path / "s.fishspine"))
    assert not warnings and session.settings["cam_method"] == method
