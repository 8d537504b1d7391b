"""lipsort.config_loader: one loader for configs/NAME.py[:ARG], by name or by path."""
import os

import pytest

from lipsort.config_loader import CONFIG_DIR, REPO, config_names, load_config


def test_config_names_are_the_config_files():
    names = config_names()
    assert "toy_wde" in names and "robust_mnist_l2" in names
    assert "common" not in names and "__init__" not in names
    assert all(os.path.isfile(os.path.join(CONFIG_DIR, f"{n}.py")) for n in names)


@pytest.mark.parametrize("name, arg", [("toy_wde", "translate,quick"), ("robust_mnist_linf", "relu"),
                                       ("two_moons", None)])
def test_every_spec_form_gives_the_same_config(name, arg, monkeypatch):
    suffix = "" if arg is None else f":{arg}"
    expected = load_config(name + suffix).to_dict()
    assert load_config(f"{os.path.join(CONFIG_DIR, name)}.py{suffix}").to_dict() == expected  # absolute
    monkeypatch.chdir(REPO)
    assert load_config(f"configs/{name}.py{suffix}").to_dict() == expected  # relative, in the repo
    monkeypatch.chdir(os.path.dirname(REPO) or "/")
    assert load_config(f"configs/{name}.py{suffix}").to_dict() == expected  # relative, elsewhere


def test_argument_reaches_get_config():
    assert load_config("toy_wde:translate").data.source == "translate"
    assert load_config("toy_wde").data.source == "cones"  # the default KIND
    assert load_config("toy_abs:quick").train.num_steps < load_config("toy_abs").train.num_steps


def test_unknown_name_lists_the_configs():
    with pytest.raises(ValueError, match="No config file 'no_such_config'.*toy_wde"):
        load_config("no_such_config:quick")
    with pytest.raises(ValueError, match="not a config"):
        load_config("common")


@pytest.mark.parametrize("spec, fragment", [
    ("toy_abs:no-such-variant", "unknown 'no-such-variant'"),
    ("toy_wde:cones,sphere128", "exclude each other"),
    ("robust_mnist_l2:relu,unconstrained,quick", "exclude each other"),
    ("gan_mnist:quick,quick", "given twice"),
    ("two_moons:quick,", "empty argument"),
])
def test_bad_argument_is_one_clear_line(spec, fragment):
    with pytest.raises(ValueError) as e:
        load_config(spec)
    message = str(e.value)
    assert "\n" not in message and fragment in message
    assert f"configs/{spec.split(':')[0]}.py" in message  # names the file...
    assert "quick" in message  # ...and what it takes


@pytest.mark.parametrize("name", config_names())
def test_every_config_loads_quick(name):
    config = load_config(f"{name}:quick")
    assert config.experiment and config.train.num_steps > 0
