"""The public surface: exports, settings and their docs, the spec's error messages."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import journeymap
from journeymap.config import SETTINGS, Settings, settings_markdown
from journeymap.errors import ConfigError, SpecError
from journeymap.model.phase_models import PHASE_MODELS
from journeymap.model.scaffold import init_project
from journeymap.model.spec import load_spec, parse_spec

ROOT = Path(__file__).parents[1]


def test_exported_members_are_exactly_all():
    # submodules appear as attributes once imported anywhere; they are not exports
    public = {
        name
        for name in dir(journeymap)
        if not name.startswith("_")
        and not isinstance(getattr(journeymap, name), types.ModuleType)
        and name != "annotations"
    }
    assert public == set(journeymap.__all__) - {"__version__"}
    for name in journeymap.__all__:
        assert hasattr(journeymap, name), name


def test_settings_doc_is_generated_from_the_table():
    doc = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert doc == settings_markdown(), "run: journeymap settings --markdown > docs/settings.md"
    for s in SETTINGS:
        assert f"`JOURNEYMAP_{s.name.upper()}`" in doc


def test_settings_precedence_and_origins(tmp_path):
    (tmp_path / "journeymap.toml").write_text(
        '[settings]\ntimezone = "Europe/Berlin"\nsession_gap_minutes = 45\n'
    )
    s = Settings.load(
        tmp_path, environ={"JOURNEYMAP_SESSION_GAP_MINUTES": "20"}, overrides={"currency": "usd"}
    )
    assert (s.timezone, s.session_gap_minutes, s.currency) == ("Europe/Berlin", 20, "USD")
    assert s.origins["timezone"].endswith("journeymap.toml")
    assert s.origins["session_gap_minutes"] == "env JOURNEYMAP_SESSION_GAP_MINUTES"
    assert s.lake == tmp_path.resolve() / "data" / "lake"


def test_settings_errors_name_the_setting_the_source_and_the_fix(tmp_path):
    (tmp_path / "journeymap.toml").write_text('[settings]\ntimezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"setting timezone \(from .*journeymap.toml\).*IANA"):
        Settings.load(tmp_path)
    (tmp_path / "journeymap.toml").write_text('[settings]\ntimezon = "UTC"\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) timezon.*allowed: spec, lake"):
        Settings.load(tmp_path)


def test_spec_unknown_phase_gives_file_line_and_allowed_values(tmp_path):
    path = tmp_path / "journey.yaml"
    path.write_text(
        "model: six-phase\n"
        "touchpoints:\n"
        "  - id: instagram_ad\n"
        "    phase: awarenes\n"
        "goal:\n"
        "  match: {event: order_completed}\n"
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    problem = info.value.problems[0]
    assert (problem.line, problem.field) == (4, "touchpoints[0].phase")
    assert str(problem) == (
        f"{path}:4: touchpoints[0].phase: unknown phase 'awarenes'; allowed: awareness, "
        "consideration, preference, purchase, after_sale, loyalty"
    )


def test_spec_reports_every_problem_at_once():
    text = (
        "model: six-phase\n"
        "language: fr\n"
        "touchpoints:\n"
        "  - {id: Ad, phase: awareness}\n"
        "  - {id: cart, phase: preference, chanel: web}\n"
        "  - {id: cart, phase: purchase}\n"
        "goal: {match: {}}\n"
    )
    with pytest.raises(SpecError) as info:
        parse_spec(text, "j.yaml")
    got = [(p.line, p.field) for p in info.value.problems]
    assert got == [
        (2, "language"),
        (4, "touchpoints[0].id"),
        (5, "touchpoints[1].chanel"),
        (6, "touchpoints[2].id"),
        (7, "goal.match"),
    ]
    assert "'fr' is not allowed; allowed: 'en' or 'de'" in str(info.value)


def test_spec_yaml_syntax_error_has_a_line():
    with pytest.raises(SpecError, match=r"j.yaml:4: not valid YAML: expected <block end>"):
        parse_spec("model: six-phase\ntouchpoints:\n  - id: a\n   phase: b\n", "j.yaml")


def test_spec_duplicate_keys_are_reported():
    with pytest.raises(SpecError, match=r"j.yaml:2: model: duplicate key"):
        parse_spec("model: six-phase\nmodel: three-stage\ngoal: {match: {event: x}}\n", "j.yaml")


def test_missing_spec_says_how_to_create_one(tmp_path):
    with pytest.raises(SpecError, match="journeymap init"):
        load_spec(tmp_path / "journey.yaml")


@pytest.mark.parametrize("model", sorted(PHASE_MODELS))
@pytest.mark.parametrize("lang", ["en", "de"])
def test_init_scaffolds_a_valid_project_for_every_model(tmp_path, model, lang):
    files = init_project(tmp_path, model=model, lang=lang, name="Mein Laden")
    campaigns = [p for p in files if p.parent.name == "campaigns"]
    assert sorted(p.name for p in files if p not in campaigns) == [
        "journey.yaml",
        "journeymap.toml",
    ]
    if model == "six-phase":  # the playbooks' phases exist in the spec and they validate
        from journeymap.orchestration.runtime import project_campaigns

        flows = project_campaigns(Settings.load(tmp_path))
        assert len(flows) == len(campaigns) == 5
        phases = {f.trigger.phase for f in flows if f.trigger.phase} | {f.phase for f in flows}
        assert phases - {None} <= set(PHASE_MODELS[model].phase_ids())
    else:
        assert campaigns == []
    spec = load_spec(tmp_path / "journey.yaml")
    assert spec.phase_ids() == PHASE_MODELS[model].phase_ids()
    assert spec.language == lang
    first = PHASE_MODELS[model].phases[0]
    assert spec.phases[0].label_in(lang) == (first.de if lang == "de" else first.en)
    assert Settings.load(tmp_path).spec == (tmp_path / "journey.yaml").resolve()
    with pytest.raises(ConfigError, match="--force"):
        init_project(tmp_path, model=model, lang=lang)


def test_german_labels_for_the_six_phase_model():
    spec = parse_spec("model: six-phase\ngoal: {match: {event: x}}\n")
    assert [p.label_in("de") for p in spec.phases] == [
        "Aufmerksamkeit",
        "Erwägung",
        "Präferenz",
        "Kauf",
        "Nachkauf",
        "Loyalität",
    ]


def test_spec_reference_example_is_valid():
    doc = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = parse_spec(example, "docs/spec.md")
    assert spec.touchpoint("tiktok_ad").rule().where == {
        "device": ["mobile"],
        "payment_method": ["card", "paypal"],
    }
    assert spec.touchpoint("cart").rule().event == ["cart"]


def test_listed_phases_annotate_the_model_in_its_order():
    spec = parse_spec(
        "model: three-stage\nphases:\n  - id: after_purchase\n    measures: [Review request]\n"
        "goal: {match: {event: x}}\n"
    )
    assert spec.phase_ids() == ["before_purchase", "during_purchase", "after_purchase"]
    assert spec.phase("after_purchase").measures == [{"*": "Review request"}]
    with pytest.raises(
        SpecError,
        match=r"j.yaml:3: phases\[0\].id: phase 'extra' is not in "
        r"model three-stage",
    ):
        parse_spec(
            "model: three-stage\nphases:\n  - id: extra\ngoal: {match: {event: x}}\n", "j.yaml"
        )
