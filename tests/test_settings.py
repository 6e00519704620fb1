"""kompot.settings: the memory budget and the layers on disk are checked when set."""

import pytest

import kompot
from kompot._settings import DEFAULT_MEMORY_BUDGET, Settings


def test_memory_budget_takes_bytes_or_sizes():
    s = Settings()
    assert s.memory_budget == DEFAULT_MEMORY_BUDGET == 4 * 1024**3
    s.memory_budget = 8_000_000_000
    assert s.memory_budget == 8 * 10**9
    for text, value in (("8GB", 8 * 10**9), ("16 GiB", 16 * 2**30), ("1.5gb", 15 * 10**8),
                        ("500MB", 5 * 10**8), ("2048", 2048)):
        s.memory_budget = text
        assert s.memory_budget == value, text
    s.memory_budget = None
    assert s.memory_budget == DEFAULT_MEMORY_BUDGET


@pytest.mark.parametrize(("value", "match"), [
    (8, "in bytes: 8 is under 1 KiB.*'8GB'"),  # a unit slip
    (-1, "positive number of bytes"),
    (True, "positive number of bytes"),
    ("lots", "not a size"),
    ("8 GBytes", "not a size"),
    ([8], "positive number of bytes"),
])
def test_a_bad_memory_budget_raises_and_keeps_the_old_one(value, match):
    s = Settings()
    s.memory_budget = "2GB"
    with pytest.raises(ValueError, match=match):
        s.memory_budget = value
    assert s.memory_budget == 2 * 10**9


def test_layers_on_disk_and_dir(tmp_path):
    s = Settings()
    assert s.layers_on_disk is None and s.layers_dir is None
    s.layers_on_disk = True
    with pytest.raises(ValueError, match="None, True or False"):
        s.layers_on_disk = "yes"
    assert s.layers_on_disk is True
    s.layers_dir = tmp_path / "new"  # need not exist yet: made when layers are written
    assert s.layers_dir == str(tmp_path / "new")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        s.layers_dir = tmp_path / "file"
    with pytest.raises(TypeError, match="directory path"):
        s.layers_dir = 3
    assert s.layers_dir == str(tmp_path / "new")
    assert "layers_dir=" in repr(s) and "memory_budget=" in repr(s)


def test_the_package_settings_are_an_instance():
    assert isinstance(kompot.settings, Settings)
