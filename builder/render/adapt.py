"""Adapt a user's amazon-ebs template to builder's contract, or say why it can't be.

A template that calls back into builder itself (`var.builder_provision_command` in a
provisioner, as the bundled one does) is used as it is. Any other HCL2 template gets a
copy in which:

- the Ansible provisioner that runs the comp's playbook is replaced by builder's
  shell-local callback (Ansible over direct SSH, then hygiene and checks); with no
  Ansible provisioner, the callback comes after the last shell/file provisioner; every
  other provisioner keeps its place;
- the source gets builder's lineage tags merged under its own `tags`, `snapshot_tags`,
  `run_tags` and `run_volume_tags` (the template's values win, except `builder:*`),
  builder's per-run key pair, security group and SSH endpoint, the env's region, the
  base image builder resolved, and in local mode the emulator's EC2 endpoint;
- on Packer 1.6, the `packer { required_plugins }` block goes (1.6 rejects it).

With `builder_provisioning: template` the provisioners stay as they are and the callback
(hygiene and checks only) comes after the last one. What builder can't adapt (several
sources or builds, a non-amazon-ebs source, WinRM or Session Manager, an Ansible
provisioner running another playbook, a subnet it can't read) is a refusal, with the
line, before anything runs.

Why text edits and not HCL2 JSON: the lark tree python-hcl2 parses gives every block
and attribute its character span, so builder replaces exactly the attributes it owns
and leaves everything else byte for byte: the user's functions, locals, heredocs,
`dynamic` blocks and comments, which a JSON re-encoding would have to rewrite (and
python-hcl2's dict loses block-vs-attribute and comment detail). The copy stays a
readable diff of the user's file (`builder render`), and each of its lines maps back to
the template's own line for Packer's error messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A provisioner that references this variable is builder's callback: such a template
# follows the contract itself and is not changed.
CALLBACK_VARIABLE = "builder_provision_command"
ANSIBLE_PROVISIONERS = ("ansible", "ansible-local")
_BEFORE_CALLBACK = ("shell", "file", "shell-local")

# Variables the adapted copy declares (when the template doesn't): builder sets them for
# each bake; the defaults keep `packer validate` of the copy working on its own.
_RUN_VARIABLES = {
    "builder_tags": ("map(string)", "{}"),
    "builder_run_tags": ("map(string)", "{}"),
    "builder_aws_region": ("string", '""'),
    "builder_source_ami": ("string", '""'),
    "builder_ec2_endpoint": ("string", '""'),
    "builder_ssh_host": ("string", '""'),
    "builder_ssh_port": ("number", "0"),
    "builder_ssh_keypair_name": ("string", '""'),
    "builder_ssh_private_key_file": ("string", '""'),
    "builder_security_group_id": ("string", '""'),
    CALLBACK_VARIABLE: ("string", "\"echo 'provisioning runs under builder bake' >&2; exit 1\""),
}
_LOCALS = """locals {{
  # builder:* tags are builder's whatever the template sets; its other tags win.
  builder_reserved_tags = {{
    for k, v in var.builder_tags : k => v if substr(k, 0, 8) == "builder:"
  }}
  builder_reserved_run_tags = {{
    for k, v in var.builder_run_tags : k => v if substr(k, 0, 8) == "builder:"
  }}
{ami_name}}}
"""
_CALLBACK = """provisioner "shell-local" {{
{i}  # builder: Ansible over direct SSH (the comp's playbook), then hygiene and checks
{i}  inline           = [var.builder_provision_command]
{i}  environment_vars = ["BUILDER_BUILD_HOST=${{build.Host}}", "BUILDER_BUILD_PORT=${{build.Port}}"]
{i}}}"""
_LOCAL_EC2 = "the local emulator's EC2 endpoint in local mode"
_LOCAL_SSH = "the local build host's SSH address in local mode"
_RUN_KEY = "builder's per-run key pair (builder's provisioning logs in with it)"
# Settings that would take the SSH session away from builder's direct connection.
_REFUSED_SSH = {
    "ssh_bastion_host": "builder provisions over direct SSH from this machine; a bastion "
                        "is not supported",
    "ssh_proxy_host": "builder provisions over direct SSH; an SSH proxy is not supported",
}
_DROPPED_SSH = {
    "ssh_agent_auth": "builder's per-run key pair authenticates",
    "ssh_password": "builder's per-run key pair authenticates",
    "temporary_key_pair_type": "builder makes the key pair",
    "temporary_key_pair_name": "builder makes the key pair",
}


@dataclass(frozen=True)
class Note:
    """One change builder makes, or one thing it can't handle; `line` is the rendered
    template's."""

    line: int | None
    text: str


@dataclass(frozen=True)
class Adaptation:
    """The adapted text, what changed (in file order), what can't be handled, and for each
    line of the adapted text the rendered line it came from (None: builder's own)."""

    text: str
    changes: tuple[Note, ...]
    refusals: tuple[Note, ...]
    line_map: tuple[int | None, ...]
    declared: tuple[str, ...]  # builder_* variables the adapted text declares
    # Where the template puts the instance (subnet_id, subnet_filter, vpc_filter, as the
    # bundled template's variables): builder's security group is made in that VPC.
    network: Mapping[str, Any] = field(default_factory=dict)
    # Files the copy's Packer steps read (file sources, scripts, user data, a kept
    # playbook): inputs of the bake's fingerprint, as the template's text is.
    files: tuple[Path, ...] = ()

    def rendered_line(self, adapted_line: int | None) -> int | None:
        if adapted_line is None or not 1 <= adapted_line <= len(self.line_map):
            return None
        return self.line_map[adapted_line - 1]


def follows_contract(text: str) -> bool:
    """True for a template that calls back into builder itself (the bundled one)."""
    return re.search(rf"\bvar\.{CALLBACK_VARIABLE}\b", text) is not None


# What a template that calls back into builder itself must also use, or its AMI would
# miss builder's tags (lineage, run id: `release`, `prune` and `reap` find AMIs by them)
# or its instance builder's key, security group or local endpoints.
CONTRACT_VARIABLES = ("builder_tags", "builder_run_tags", "builder_ssh_keypair_name",
                      "builder_ssh_private_key_file", "builder_security_group_id",
                      "builder_ec2_endpoint", "builder_ssh_host", "builder_ssh_port")


def contract_gaps(text: str) -> list[str]:
    """The contract variables a template that calls back into builder doesn't use."""
    return [name for name in CONTRACT_VARIABLES
            if re.search(rf"\bvar\.{name}\b", text) is None]


@dataclass(frozen=True)
class Context:
    """What the adaptation needs from the combo: where Packer runs (the template's
    folder), the comp's playbook, and the values of the template's variables."""

    packer_dir: Path
    playbook: Path
    values: Mapping[str, Any]
    root: Path  # the infra repo: paths in messages are shown relative to it
    plugins_block: bool = True  # Packer >= 1.7; 1.6 has the amazon builder built in
    # `builder_provisioning: template`: keep the template's provisioners, add only
    # builder's hygiene and checks after them
    template_provisioning: bool = False


def adapt(text: str, context: Context) -> Adaptation:
    """The adapted copy of a rendered template (already known to parse)."""
    import hcl2  # slow to import; only rendering needs it

    tree = hcl2.parses_to_tree(text)
    return _Adapter(text, context).run(_body(tree))


# -- the lark tree ---------------------------------------------------------------


def _data(node: Any) -> str | None:
    return getattr(node, "data", None) if hasattr(node, "children") else None


def _body(node: Any) -> Any:
    if _data(node) == "body":
        return node
    return next(c for c in node.children if _data(c) == "body")


def _children(body: Any, kind: str) -> Iterator[Any]:
    return (c for c in body.children if _data(c) == kind)


def _name(node: Any) -> str:
    first = node.children[0]
    return str(first.children[0].value) if _data(first) == "identifier" else ""


def _labels(block: Any) -> list[str]:
    return ["".join(str(t.value) for part in c.children if _data(part) == "string_part"
                    for t in part.children)
            for c in block.children[1:] if _data(c) == "string"]


def _line(node: Any) -> int:
    return int(node.meta.line)


def _rbrace(block: Any) -> int:
    return int(next(c for c in reversed(block.children)
                    if getattr(c, "type", None) == "RBRACE").start_pos)


@dataclass
class _Attribute:
    name: str
    node: Any
    value: Any  # the expression node

    @property
    def line(self) -> int:
        return _line(self.node)


def _attributes(body: Any) -> dict[str, _Attribute]:
    found = {}
    for node in _children(body, "attribute"):
        found[_name(node)] = _Attribute(_name(node), node, node.children[-1])
    return found


# -- the adaptation --------------------------------------------------------------


class _Adapter:
    def __init__(self, text: str, context: Context):
        self.text = text
        self.context = context
        self.edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
        self.changes: list[Note] = []
        self.refusals: list[Note] = []
        self.declared: set[str] = set()
        self.defaults: dict[str, str] = {}
        self.locals: dict[str, str] = {}
        self.network: dict[str, Any] = {}
        self.files: list[Path] = []

    def span(self, node: Any) -> str:
        return self.text[node.meta.start_pos:node.meta.end_pos]

    def change(self, line: int | None, text: str) -> None:
        self.changes.append(Note(line, text))

    def refuse(self, line: int | None, text: str) -> None:
        self.refusals.append(Note(line, text))

    def run(self, top: Any) -> Adaptation:
        blocks = list(_children(top, "block"))
        for block in blocks:
            kind = _name(block)
            if kind == "variable" and _labels(block):
                name = _labels(block)[0]
                self.declared.add(name)
                default = _attributes(_body(block)).get("default")
                if default is not None:
                    self.defaults[name] = self.span(default.value)
            elif kind == "locals":
                for name, attribute in _attributes(_body(block)).items():
                    self.locals[name] = self.span(attribute.value)
        for block in blocks:
            if _name(block) == "packer" and not self.context.plugins_block:
                self.edits.append((block.meta.start_pos, block.meta.end_pos,
                                   "# builder: the packer block removed (Packer 1.6 has the "
                                   "amazon builder built in and rejects required_plugins)"))
                self.change(_line(block), "packer block removed: Packer 1.6 rejects "
                            "required_plugins")
        sources = [b for b in blocks if _name(b) == "source"]
        builds = [b for b in blocks if _name(b) == "build"]
        for block in sources:
            labels = _labels(block)
            if labels[:1] != ["amazon-ebs"]:
                self.refuse(_line(block), f'source "{labels[0] if labels else "?"}": builder '
                            "bakes amazon-ebs sources only")
        if len(builds) != 1:
            self.refuse(_line(builds[1]) if builds else None,
                        f"{len(builds)} build blocks: builder runs exactly one")
        listed = [self._check_build_sources(build) for build in builds[:1]]
        if len(sources) > 1 and not any(count > 1 for count in listed):
            self.refuse(_line(sources[1]), f"{len(sources)} source blocks: builder bakes one "
                        "amazon-ebs source per template")
        if self.refusals or not sources:
            if not sources:
                self.refuse(None, "no source block: builder needs one amazon-ebs source")
            return self._result()
        ami_name = self._source(sources[0])
        self._read_files(sources[0], builds[0])
        self._provisioners(builds[0])
        self._append(ami_name)
        return self._result()

    def _check_build_sources(self, build: Any) -> int:
        body = _body(build)
        listed = _attributes(body).get("sources")
        count = 0
        if listed is not None:
            count += len(re.findall(r'"source\.[^"]+"', self.span(listed.value)))
        nested = [b for b in _children(body, "block") if _name(b) == "source"]
        count += len(nested)
        if count > 1:
            self.refuse(_line(build), f"the build lists {count} sources: builder bakes one "
                        "AMI per bake (one amazon-ebs source)")
        return count

    # -- source ---------------------------------------------------------------------
    def _source(self, block: Any) -> str | None:
        body = _body(block)
        attributes = _attributes(body)
        indent = " " * (next(iter(attributes.values())).node.meta.column - 1
                        if attributes else 2)
        added: list[str] = []
        added_why: dict[str, list[str]] = {}  # reason → names, one note per reason

        def replace(name: str, expression: str, why: str) -> None:
            attribute = attributes[name]
            self.edits.append((attribute.value.meta.start_pos, attribute.value.meta.end_pos,
                               expression))
            self.change(attribute.line, f"{name}: {why}")

        def add(name: str, expression: str, why: str) -> None:
            added.append(f"{indent}{name} = {expression}\n")
            added_why.setdefault(why, []).append(name)

        def drop(name: str, why: str) -> None:
            attribute = attributes[name]
            self.edits.append((attribute.node.meta.start_pos, attribute.node.meta.end_pos,
                               f"# builder: {name} removed ({why})"))
            self.change(attribute.line, f"{name} removed: {why}")

        for name, why in _REFUSED_SSH.items():
            if name in attributes:
                self.refuse(attributes[name].line, f"{name}: {why}")
        communicator = attributes.get("communicator")
        if communicator is not None and self.span(communicator.value).strip('"') != "ssh":
            self.refuse(communicator.line, f"communicator = {self.span(communicator.value)}: "
                        "builder provisions over SSH")
        interface = attributes.get("ssh_interface")
        if interface is not None and "session_manager" in self.span(interface.value):
            self.refuse(interface.line, "ssh_interface = session_manager: builder provisions "
                        "over direct SSH")
        ami = attributes.get("ami_name")  # without one, Packer's validate says so
        ami_name = self.span(ami.value) if ami is not None else None
        if ami_name is not None:
            replace("ami_name", "local.builder_ami_name",
                    "moved into local.builder_ami_name (the Name tag uses it too)")

        def tags(name: str, builder: str, reserved: str, with_name: bool) -> None:
            base = f"var.{builder}" + (", { Name = local.builder_ami_name }" if with_name else "")
            if name in attributes:
                user = self.span(attributes[name].value)
                replace(name, f"merge({base}, {user}, local.{reserved})",
                        "merged with builder's tags (the template's win, except builder:*)")
            else:
                add(name, f"merge({base})" if with_name else f"var.{builder}",
                "builder's tags (lineage, run id)")

        tags("tags", "builder_tags", "builder_reserved_tags", ami_name is not None)
        tags("snapshot_tags", "builder_tags", "builder_reserved_tags", ami_name is not None)
        tags("run_tags", "builder_run_tags", "builder_reserved_run_tags", False)
        tags("run_volume_tags", "builder_run_tags", "builder_reserved_run_tags", False)

        def preferred(name: str, variable: str, unset: str, fallback: str, why: str) -> None:
            if name in attributes:
                user = self.span(attributes[name].value)
                replace(name, f"var.{variable} != {unset} ? var.{variable} : {user}", why)
            elif fallback:
                add(name, f"var.{variable} != {unset} ? var.{variable} : {fallback}", why)
            else:
                add(name, f"var.{variable}", why)

        preferred("region", "builder_aws_region", '""', "", "the env's aws_region")
        preferred("custom_endpoint_ec2", "builder_ec2_endpoint", '""', "", _LOCAL_EC2)
        if "skip_region_validation" in attributes:
            user = self.span(attributes["skip_region_validation"].value)
            replace("skip_region_validation", f'var.builder_ec2_endpoint != "" ? true : {user}',
                    "on in local mode")
        else:
            add("skip_region_validation", 'var.builder_ec2_endpoint != ""', _LOCAL_EC2)
        preferred("ssh_host", "builder_ssh_host", '""', "", _LOCAL_SSH)
        preferred("ssh_port", "builder_ssh_port", "0", "22", _LOCAL_SSH)
        for name, variable, why in (
                ("ssh_keypair_name", "builder_ssh_keypair_name", _RUN_KEY),
                ("ssh_private_key_file", "builder_ssh_private_key_file", _RUN_KEY)):
            if name in attributes:
                replace(name, f"var.{variable}", why)
            else:
                add(name, f"var.{variable}", why)
        for name, why in _DROPPED_SSH.items():
            if name in attributes:
                drop(name, why)
        self._network(body, attributes)
        self._security_group(attributes, replace, add)
        self._source_image(body, attributes, replace, add)
        if added:
            self.edits.append((_rbrace(block), _rbrace(block),
                               f"{indent}# added by builder\n" + "".join(added)))
            for why, names in added_why.items():
                self.change(_line(block), f"adds {', '.join(names)}: {why}")
        return ami_name

    def _network(self, body: Any, attributes: dict[str, _Attribute]) -> None:
        """The subnet or VPC the template chooses, as values builder can look up."""
        for name in ("subnet_id", "vpc_id"):
            if name in attributes:
                value = self._string(self.span(attributes[name].value), 0)
                if value is None:
                    self.refuse(attributes[name].line, f"{name} = "
                                f"{self.span(attributes[name].value)}: builder can't tell "
                                "which VPC its security group belongs in (use a literal or a "
                                "variable with a value)")
                elif value:
                    key = "subnet_id" if name == "subnet_id" else "vpc_filter"
                    self.network[key] = value if name == "subnet_id" else {"vpc-id": value}
        for block in _children(body, "block"):
            if _name(block) not in ("subnet_filter", "vpc_filter"):
                continue
            found = _attributes(_body(block)).get("filters")
            filters = self._map(self.span(found.value)) if found is not None else {}
            if filters is None:
                self.refuse(_line(block), f"{_name(block)}: builder can't read its filters "
                            "(use literals or variables with values)")
            elif filters:
                self.network.setdefault(_name(block), filters)

    def _map(self, expression: str) -> dict[str, str] | None:
        """An object literal of string values (`{ "tag:Tier" = "private" }`), or None."""
        text = expression.strip()
        if not (text.startswith("{") and text.endswith("}")):
            found = re.fullmatch(r"var\.(\w+)", text)
            value = self.context.values.get(found.group(1)) if found else None
            if isinstance(value, Mapping):
                return {str(k): str(v) for k, v in value.items()}
            return None
        result: dict[str, str] = {}
        for item in re.split(r"[\n,]", text[1:-1]):
            if not item.strip():
                continue
            key, equals, value_text = item.partition("=")
            value = self._string(value_text, 0) if equals else None
            if value is None:
                return None
            result[key.strip().strip('"')] = value
        return result

    def _security_group(self, attributes: dict[str, _Attribute],
                        replace: Callable[[str, str, str], None],
                        add: Callable[[str, str, str], None]) -> None:
        why = "builder's per-run security group (SSH from ssh_source_cidrs) added"
        if "security_group_ids" in attributes:
            user = self.span(attributes["security_group_ids"].value)
            replace("security_group_ids",
                    f"concat(compact([var.builder_security_group_id]), {user})", why)
        elif "security_group_id" in attributes:
            user = self.span(attributes["security_group_id"].value)
            replace("security_group_id", f"var.builder_security_group_id != \"\" ? "
                    f"var.builder_security_group_id : {user}", "builder's per-run security "
                    "group (SSH from ssh_source_cidrs)")
        else:
            add("security_group_id", "var.builder_security_group_id",
                "builder's per-run security group (SSH from ssh_source_cidrs)")

    def _source_image(self, body: Any, attributes: dict[str, _Attribute],
                      replace: Callable[[str, str, str], None],
                      add: Callable[[str, str, str], None]) -> None:
        """The base image builder resolved (from source_ami / source_ami_filter in the vars:
        the fingerprint and `rebuild` follow it); the template's own choice when unset."""
        why = "the base image builder resolved from the vars (fingerprint, rebuild)"
        filters = [b for b in _children(body, "block") if _name(b) == "source_ami_filter"]
        if "source_ami" in attributes:
            user = self.span(attributes["source_ami"].value)
            replace("source_ami", f'var.builder_source_ami != "" ? var.builder_source_ami : '
                    f"{user}", why)
        else:
            add("source_ami", "var.builder_source_ami", why)
        for block in filters:
            # Packer applies the filter to a given source_ami as well: drop it when pinned.
            indent = " " * (block.meta.column - 1)
            inner = self.text[_body(block).meta.start_pos:_body(block).meta.end_pos] \
                if _body(block).children else "\n"
            inner = inner.replace("\n", "\n  ").rstrip(" ") + indent
            self.edits.append((block.meta.start_pos, block.meta.end_pos,
                               'dynamic "source_ami_filter" {\n'
                               f'{indent}  for_each = var.builder_source_ami == "" ? [1] : []\n'
                               f"{indent}  content {{{inner}  }}\n{indent}}}"))
            self.change(_line(block), "source_ami_filter: used only when builder has not "
                        "resolved the base image")

    # -- provisioners -------------------------------------------------------------
    def _provisioners(self, build: Any) -> None:
        body = _body(build)
        provisioners = [b for b in _children(body, "block") if _name(b) == "provisioner"]
        if self.context.template_provisioning:
            self._after_all(build, provisioners)
            return
        ansible = [b for b in provisioners if _labels(b)[:1] and _labels(b)[0]
                   in ANSIBLE_PROVISIONERS]
        wanted = self.context.playbook.resolve()
        runs_comp = []
        for block in ansible:
            kind = _labels(block)[0]
            attributes = _attributes(_body(block))
            playbook = attributes.get("playbook_file")
            if playbook is None:
                self.refuse(_line(block), f'provisioner "{kind}" has no playbook_file')
                continue
            path = self._path(self.span(playbook.value))
            if path is None:
                self.refuse(playbook.line, f"playbook_file = {self.span(playbook.value)}: "
                            "builder can't tell which playbook this is (use a path relative "
                            "to the template's folder, path.root, or a variable with a value)")
            elif path.resolve() != wanted:
                self.refuse(playbook.line, f"playbook_file is {self._shown(path.resolve())}, "
                            f"not the comp's playbook {self._shown(wanted)}: builder runs the "
                            "comp's playbook; set `playbook:` in the comp's vars to this one")
            else:
                runs_comp.append(block)
        if len(runs_comp) > 1:
            self.refuse(_line(runs_comp[1]), "the comp's playbook runs more than once")
        if self.refusals:
            return
        column = (provisioners[0].meta.column - 1) if provisioners else 2
        callback = _CALLBACK.format(i=" " * column)
        if runs_comp:
            block = runs_comp[0]
            kind = _labels(block)[0]
            ignored = sorted(set(_attributes(_body(block))) - {"playbook_file"})
            self.edits.append((block.meta.start_pos, block.meta.end_pos,
                               f"# builder: provisioner \"{kind}\" replaced by builder's "
                               f"provisioning\n{' ' * column}{callback}"))
            playbook_text = self.span(_attributes(_body(block))["playbook_file"].value)
            note = (f'provisioner "{kind}" ({playbook_text}) replaced by builder\'s provisioning: '
                    "Ansible over direct SSH, hygiene, checks")
            if ignored:
                note += f"; its {', '.join(ignored)} not used (builder passes the comp's vars)"
            self.change(_line(block), note)
            return
        before = [b for b in provisioners if _labels(b)[:1] and _labels(b)[0] in _BEFORE_CALLBACK]
        anchor = (before or provisioners)[-1] if provisioners else None
        if anchor is not None:
            self.edits.append((anchor.meta.end_pos, anchor.meta.end_pos,
                               f"\n{' ' * column}{callback}"))
            self.change(int(anchor.meta.end_line), "builder's provisioning added after "
                        f'provisioner "{_labels(anchor)[0]}" (no Ansible provisioner runs '
                        "the comp's playbook)")
        else:
            self.edits.append((_rbrace(build), _rbrace(build), f"{' ' * column}{callback}\n"))
            self.change(_line(build), "builder's provisioning added (the build has no "
                        "provisioner)")

    def _after_all(self, build: Any, provisioners: list[Any]) -> None:
        """`builder_provisioning: template`: the template's provisioners run as they are;
        builder's hygiene and checks come after the last one."""
        column = (provisioners[0].meta.column - 1) if provisioners else 2
        callback = _CALLBACK.format(i=" " * column).replace(
            "Ansible over direct SSH (the comp's playbook), then hygiene and checks",
            "hygiene and checks over direct SSH (builder_provisioning: template)")
        if provisioners:
            last = provisioners[-1]
            self.edits.append((last.meta.end_pos, last.meta.end_pos,
                               f"\n{' ' * column}{callback}"))
            line = int(last.meta.end_line)
        else:
            self.edits.append((_rbrace(build), _rbrace(build), f"{' ' * column}{callback}\n"))
            line = _line(build)
        self.change(line, "builder_provisioning: template: the template's provisioners run "
                    "as they are (through Packer: slower); builder's hygiene and checks added "
                    "after the last one")

    def _read_files(self, source: Any, build: Any) -> None:
        """The local files Packer reads for this build, where builder can tell them."""
        found: list[tuple[str, Any]] = []
        user_data = _attributes(_body(source)).get("user_data_file")
        if user_data is not None:
            found.append(("", user_data.value))
        for block in _children(_body(build), "block"):
            if _name(block) != "provisioner" or not _labels(block):
                continue
            attributes = _attributes(_body(block))
            # A replaced Ansible provisioner's playbook is the comp's (hashed already).
            names = ["script", "scripts"] + (
                ["playbook_file"] if self.context.template_provisioning else [])
            direction = attributes.get("direction")
            if _labels(block)[0] == "file" and (
                    direction is None or "download" not in self.span(direction.value)):
                names.append("source")
            found.extend((name, attributes[name].value) for name in names if name in attributes)
        for _, node in found:
            text = self.span(node).strip()
            items = re.findall(r'"(?:[^"\\]|\\.)*"', text) if text.startswith("[") else [text]
            for item in items:
                value = self._string(item, 0)
                if value is None:
                    continue
                path = (self.context.packer_dir / value).resolve()  # absolute stays absolute
                if path.is_dir():
                    self.files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
                elif path.is_file():
                    self.files.append(path)

    def _shown(self, path: Path) -> str:
        root = self.context.root.resolve()
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    def _path(self, expression: str) -> Path | None:
        """A playbook_file expression as a path, as Packer would see it with the template's
        folder as working directory; None when it depends on more than literals, path.root,
        path.cwd and variables or locals with known values."""
        value = self._string(expression, depth=0)
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else self.context.packer_dir / path

    def _string(self, expression: str, depth: int) -> str | None:
        expression = expression.strip()
        if depth > 5:
            return None
        if re.fullmatch(r"path\.(root|cwd)", expression):
            return str(self.context.packer_dir)
        found = re.fullmatch(r"(var|local)\.(\w+)", expression)
        if found:
            kind, name = found.groups()
            if kind == "var":
                value = self.context.values.get(name)
                if isinstance(value, str):
                    return value
                default = self.defaults.get(name)
                return self._string(default, depth + 1) if default is not None else None
            local = self.locals.get(name)
            return self._string(local, depth + 1) if local is not None else None
        if not (expression.startswith('"') and expression.endswith('"')) or len(expression) < 2:
            return None
        inner = expression[1:-1]
        parts: list[str] = []
        position = 0
        for found_part in re.finditer(r"\$\{([^}]*)\}", inner):
            parts.append(inner[position:found_part.start()])
            value = self._string(found_part.group(1), depth + 1)
            if value is None:
                return None
            parts.append(value)
            position = found_part.end()
        rest = inner[position:]
        if '"' in rest or "%{" in rest:
            return None
        parts.append(rest)
        return "".join(parts)

    # -- variables and locals ---------------------------------------------------------
    def _append(self, ami_name: str | None) -> None:
        added = []
        for name, (type_expr, default) in _RUN_VARIABLES.items():
            if name not in self.declared:
                added.append(f'variable "{name}" {{\n  type    = {type_expr}\n'
                             f"  default = {default}\n}}\n")
        self.edits.append((len(self.text), len(self.text),
                           ("" if self.text.endswith("\n") else "\n") +
                           "\n# -- added by builder: set for each bake ----------------------\n"
                           + "\n".join(added) + "\n" + _LOCALS.format(ami_name=(
                               f"  builder_ami_name = {ami_name}\n" if ami_name else ""))))
        self.change(None, f"declares {len(added)} builder_* variables (set by `builder bake` "
                    "for each run) and builder's locals")
        self.declared.update(_RUN_VARIABLES)

    def _result(self) -> Adaptation:
        text, line_map = _apply(self.text, self.edits)
        changes = sorted(self.changes, key=lambda n: (n.line is None, n.line or 0))
        refusals = sorted(self.refusals, key=lambda n: (n.line is None, n.line or 0))
        if self.refusals:
            text, line_map = self.text, tuple(range(1, self.text.count("\n") + 2))
        return Adaptation(text, tuple(changes), tuple(refusals), line_map,
                          tuple(sorted(n for n in self.declared if n.startswith("builder_"))),
                          dict(self.network), tuple(sorted(set(self.files))))


def _apply(text: str, edits: list[tuple[int, int, str]]) -> tuple[str, tuple[int | None, ...]]:
    """Apply non-overlapping span edits; each output line remembers the input line it
    starts in (a line of replacement text: the line of what it replaced, an appended
    one: None)."""
    pieces: list[tuple[str, int | None, bool]] = []  # (text, input offset, is_original)
    position = 0
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1])):
        pieces.append((text[position:start], position, True))
        pieces.append((replacement, start if start < len(text) else None, False))
        position = max(position, end)
    pieces.append((text[position:], position, True))
    out: list[str] = []
    line_map: list[int | None] = []
    at_line_start = True
    for piece, offset, original in pieces:
        for index, char in enumerate(piece):
            if at_line_start:
                if offset is None:
                    line_map.append(None)
                else:
                    where = offset + index if original else offset
                    line_map.append(text.count("\n", 0, where) + 1)
            at_line_start = char == "\n"
        out.append(piece)
    return "".join(out), tuple(line_map)
