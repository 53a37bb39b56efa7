"""Hostile input, round three (issue 39): each case gives one `bench: error:` line, a warning, or the
right result."""
import pytest

from test_overrides import one_error  # noqa: E402  (the CLI helpers)


@pytest.mark.parametrize("module, kind", [("sys", "built-in"), ("os", "frozen")])
def test_a_module_of_python_itself_is_not_a_plugin(capsys, monkeypatch, module, kind):
    from bench import plugins

    monkeypatch.setattr(plugins, "_requested", [])  # this process's --plugin values: this test's alone
    error = one_error(capsys, "list", "--plugin", module)
    assert f"plugin '{module}': a module of Python itself ({kind}), not a plugin" in error
