"""`bench new method NAME [--dir DIR]`: a starting method file and its smoke test, both passing as written.

    bench new method my_adapter --dir ~/my_methods
    bench run --plugin ~/my_methods/my_adapter.py --protocol smoke --method my_adapter
    HF_HUB_OFFLINE=1 python -m pytest ~/my_methods/test_my_adapter.py
"""
from __future__ import annotations

from pathlib import Path
from string import Template

from bench.core.errors import BenchError
from bench.core.registry import NAME_RULE, name_problem, quoted

TEMPLATES = Path(__file__).resolve().parent / "templates"


def cmd_new_method(args) -> int:
    from bench.config.catalog import registrations

    name = args.name
    problem = name_problem(name)  # the rule every registry applies when the method is registered
    if problem:
        why = " (it is also the file's module name)" if problem == NAME_RULE else ""
        raise BenchError(f"method name {quoted(name)}: {problem}{why}; pick another name")
    if name in {entry for entry, _ in registrations()["methods"]}:
        raise BenchError(f"method name '{name}' is a built-in method's; pick another name")
    folder = Path(args.dir).expanduser()
    files = {folder / f"{name}.py": "method.py.txt", folder / f"test_{name}.py": "test_method.py.txt"}
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise BenchError(f"'{existing[0]}' exists already; bench new never overwrites a file (pick another --dir)")
    words = {"name": name, "cls": "".join(part.title() for part in name.split("_")),
             "file": f"{name}.py", "test_file": f"test_{name}.py"}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, template in files.items():
            path.write_text(Template((TEMPLATES / template).read_text()).substitute(words))
    except OSError as err:
        raise BenchError(f"--dir '{args.dir}': cannot write there ({err.strerror or type(err).__name__})") from None
    method, test = files
    print(f"bench: wrote {method} and {test}\n"
          f"  bench run --plugin {method} --protocol smoke --method {name}\n"
          f"  HF_HUB_OFFLINE=1 python -m pytest {test}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("new", help="start a new method: a method file and its smoke test")
    new = p.add_subparsers(dest="new_command", required=True, parser_class=type(p))
    q = new.add_parser("method", help="write NAME.py (config, card, forward, optional hooks) and test_NAME.py")
    q.add_argument("name", help="the method's registry name, e.g. my_adapter")
    q.add_argument("--dir", default=".", help="where to write the two files (default: this folder)")
    q.set_defaults(func=cmd_new_method)
