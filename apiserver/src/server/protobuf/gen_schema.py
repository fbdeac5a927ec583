#!/usr/bin/env python3
"""Writes schema.txt, the protobuf schema src/server/protobuf.rs decodes request bodies with.

Where the facts come from:
  - Message names, field numbers, scalar types, repeated/map and message references: the prost structs
    of the crates.io crate `k8s-pb` 0.9.0 (Apache-2.0; `cargo fetch` or any build that resolved it
    unpacks it under ~/.cargo/registry/src/index.crates.io-*/k8s-pb-0.9.0/). Its `src/` tree mirrors
    the Go packages: `api/apps/v1/mod.rs` holds `k8s.io/api/apps/v1`, and so on. We read only the
    `#[prost(...)]` attributes and field declarations; nothing of it is copied into this repository.
  - What only the Go types know (which fields show a zero in JSON, which are `json:",inline"`, the JSON
    names that are not the lowerCamel of k8s-pb's snake_case names): go_json.txt beside this script,
    a hand-kept table (see its header).

Rerun it after moving to another k8s-pb version or adding a package to PACKAGES:
    python3 apiserver/src/server/protobuf/gen_schema.py [PATH/TO/k8s-pb-X.Y.Z/src]
then run `cargo test -p skiff-apiserver --test protobuf` and commit schema.txt. The build never runs it.

Output format (schema.txt): a `message PKG.Name` line opens each message; one line per field follows:
    TAG JSON_NAME TYPE [keepzero] [inline]
TYPE is a scalar (string bool int32 int64 double bytes) or a message name, prefixed with `[]` when
repeated or `map[]` for a map with string keys. PKG is `core.v1`, `apps.v1`, …, `meta.v1`, `runtime`,
`api.resource`, `util.intstr`.
"""
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# k8s-pb module directories (under src/) whose messages go into the table: the packages the API server
# serves or kubectl's typed commands send, and the apimachinery packages they use.
PACKAGES = [
    "api/core/v1",
    "api/apps/v1",
    "api/batch/v1",
    "api/policy/v1",
    "api/autoscaling/v1",
    "api/authorization/v1",
    "api/authentication/v1",
    "api/coordination/v1",
    "api/discovery/v1",
    "api/events/v1",
    "apimachinery/pkg/apis/meta/v1",
    "apimachinery/pkg/runtime",
    "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr",
]

SCALARS = {"string", "bool", "int32", "int64", "double", "bytes"}

STRUCT = re.compile(r"^pub struct (\w+) \{")
ATTR = re.compile(r"^\s*#\[prost\((.*)\)\]\s*$")
FIELD = re.compile(r"^\s*pub (?:r#)?(\w+):\s*(.*)$")
PATH = re.compile(r"(?<![:\w])((?:super::)*(?:[a-z_][a-z0-9_]*::)*[A-Z]\w*)")


def package_name(module):
    """`api/apps/v1` -> `apps.v1`; `apimachinery/pkg/apis/meta/v1` -> `meta.v1`."""
    parts = module.split("/")
    if parts[0] == "api":
        return ".".join(parts[1:])
    if parts[:2] == ["apimachinery", "pkg"]:
        return ".".join(p for p in parts[2:] if p != "apis")
    raise SystemExit(f"no package name for module {module}")


def lower_camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def resolve(module, path):
    """A Rust type path as written in `module` (`super::super::core::v1::PodSpec`) -> (module, name)."""
    here = module.split("/")
    segments = path.split("::")
    while segments[0] == "super":
        here = here[:-1]
        segments = segments[1:]
    return "/".join(here + segments[:-1]), segments[-1]


def parse_attr(attr):
    """`string, optional, tag = "1"` -> (type, label, tag); maps give ("map", value type, tag)."""
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    m = re.match(r'btree_map = "string, (\w+)"', attr)
    if m:
        return "map", m.group(1), tag
    words = [w.strip() for w in attr.split(",")]
    kind = words[0].split(" = ")[0].strip()
    label = "repeated" if "repeated" in words else "optional"
    return kind, label, tag


def read_module(src, module):
    """Every struct in `module`'s mod.rs: name -> list of (tag, rust field, kind, label, ref)."""
    messages = {}
    lines = open(os.path.join(src, module, "mod.rs"), encoding="utf-8").read().splitlines()
    i = 0
    struct = attr = None
    while i < len(lines):
        line = lines[i]
        i += 1
        m = STRUCT.match(line)
        if m:
            struct = m.group(1)
            messages[struct] = []
            continue
        if struct is None:
            continue
        if line == "}":
            struct = None
            continue
        m = ATTR.match(line)
        if m:
            attr = m.group(1)
            continue
        m = FIELD.match(line)
        if not m or attr is None:
            continue
        name, decl = m.group(1), m.group(2)
        # A declaration rustfmt wrapped runs until its angle brackets close and it ends with a comma.
        while decl.count("<") != decl.count(">") or not decl.rstrip().endswith(","):
            decl += lines[i].strip()
            i += 1
        kind, label, tag = parse_attr(attr)
        attr = None
        ref = None
        if kind == "message" or (kind == "map" and label == "message"):
            paths = [p for p in PATH.findall(decl) if not p.startswith(("Option", "Vec", "Box", "BTreeMap"))]
            paths = [p for p in paths if p not in ("String",)]
            if not paths:
                raise SystemExit(f"{module} {struct}.{name}: no message type in {decl!r}")
            ref = resolve(module, paths[-1])
        messages[struct].append((tag, name, kind, label, ref))
    return messages


def read_facts():
    """go_json.txt: `PKG.Message.jsonName fact...` -> {(message, json name): [facts]}."""
    facts = {}
    for line in open(os.path.join(HERE, "go_json.txt"), encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, *words = line.split()
        message, field = key.rsplit(".", 1)
        facts[(message, field)] = words
    return facts


def main():
    if len(sys.argv) > 1:
        src = sys.argv[1]
    else:
        found = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.0/src")))
        if not found:
            raise SystemExit("k8s-pb 0.9.0 is not unpacked; pass the path of its src/ directory")
        src = found[-1]
    facts = read_facts()
    renames = {
        (msg, words[i][len("rust="):]): field
        for (msg, field), words in facts.items()
        for i in range(len(words))
        if words[i].startswith("rust=")
    }
    used = set()
    out = []
    modules = {m: read_module(src, m) for m in PACKAGES}
    for module in PACKAGES:
        pkg = package_name(module)
        for struct in sorted(modules[module]):
            message = f"{pkg}.{struct}"
            out.append(f"message {message}")
            for tag, rust, kind, label, ref in sorted(modules[module][struct]):
                json = renames.get((message, rust), lower_camel(rust))
                if (message, rust) in renames:
                    used.add((message, json))
                if ref is not None:
                    ref_module, ref_name = ref
                    if ref_module not in modules or ref_name not in modules[ref_module]:
                        raise SystemExit(f"{message}.{json} refers to {ref_module} {ref_name}, not in PACKAGES")
                    type_ = f"{package_name(ref_module)}.{ref_name}"
                elif kind == "map":
                    type_ = label
                else:
                    type_ = kind
                if type_ not in SCALARS and ref is None:
                    raise SystemExit(f"{message}.{json}: unknown type {kind}")
                if kind == "map":
                    type_ = "map[]" + type_
                elif label == "repeated":
                    type_ = "[]" + type_
                flags = [w for w in facts.get((message, json), []) if not w.startswith("rust=")]
                if (message, json) in facts:
                    used.add((message, json))
                out.append(" ".join([str(tag), json, type_] + flags))
    unused = sorted(set(facts) - used)
    if unused:
        raise SystemExit("go_json.txt names fields k8s-pb does not have: " + ", ".join(".".join(u) for u in unused))
    with open(os.path.join(HERE, "schema.txt"), "w", encoding="utf-8") as f:
        f.write("# Generated by gen_schema.py from k8s-pb 0.9.0 and go_json.txt; do not edit.\n")
        f.write("\n".join(out) + "\n")


main()
