"""Config layering, origins, Jinja and every validation rule, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.config.layers import ConfigLoader
from builder.config.layout import Layout
from builder.errors import ConfigError, ValidationFailed


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write(tmp_path, "vars/shop/common/common.yml",
          "aws_region: eu-west-1\n"
          "source_ami: ami-0123456789abcdef0\n"
          "tags:\n  team: web\n  cost: shared\n"
          "greeting: 'hi {{ app }}-{{ env }}-{{ comp }}'\n")
    write(tmp_path, "vars/shop/common/web.yml", "instance_type: t3.small\nport: 80\n")
    write(tmp_path, "vars/shop/dev/common.yml",
          "components: [web, worker]\n"
          "aws_account_id: '111111111111'\n"
          "tags:\n  cost: dev\n"
          "port: 8000\n")
    write(tmp_path, "vars/shop/dev/web.yml", "port: 8080\n")
    write(tmp_path, "vars/shop/dev/secrets.vault.yml", "$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    return tmp_path


def loader(root: Path, **overrides: str) -> ConfigLoader:
    return ConfigLoader(Layout(root), overrides)


def resolve_problems(root: Path, app: str = "shop", env: str = "dev", comp: str = "web",
                     **overrides: str) -> list[str]:
    with pytest.raises((ValidationFailed, ConfigError)) as caught:
        loader(root, **overrides).resolve(app, env, comp)
    problems = getattr(caught.value, "problems", [caught.value.problem])
    return [p.format(root) for p in problems]


def test_layers_apply_lowest_first_and_keep_origins(repo: Path) -> None:
    resolved = loader(repo).resolve("shop", "dev", "web")
    assert resolved.values["port"] == 8080
    assert resolved.origin("port") == "vars/shop/dev/web.yml:1"
    assert resolved.values["instance_type"] == "t3.small"
    assert resolved.origin("instance_type") == "vars/shop/common/web.yml:1"
    assert resolved.values["aws_region"] == "eu-west-1"
    assert resolved.origin("aws_region") == "vars/shop/common/common.yml:1"
    assert resolved.values["ami_keep"] == 5
    assert resolved.origin("ami_keep") == "<builder defaults>"


def test_mappings_merge_key_by_key(repo: Path) -> None:
    resolved = loader(repo).resolve("shop", "dev", "web")
    assert resolved.values["tags"] == {"team": "web", "cost": "dev"}
    assert resolved.origin("tags") == "vars/shop/dev/common.yml:3"


def test_lists_and_scalars_replace(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "components: [web]\ntags: none\n")
    resolved = loader(repo).resolve("shop", "dev", "web")
    assert resolved.values["components"] == ["web"]
    assert resolved.values["tags"] == "none"
    assert resolved.origin("tags") == "vars/shop/dev/web.yml:2"


def test_command_line_is_the_top_layer_and_reads_yaml_scalars(repo: Path) -> None:
    resolved = loader(repo, port="9000", ami_keep="2").resolve("shop", "dev", "web")
    assert resolved.values["port"] == 9000
    assert resolved.values["ami_keep"] == 2
    assert resolved.origin("port") == "<command line -e>"


def test_jinja_with_builtins_and_other_vars(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml",
          "port: 8080\nurl: 'http://{{ app }}.{{ env }}:{{ port }}'\nports: '{{ [port, 443] }}'\n")
    resolved = loader(repo).resolve("shop", "dev", "web")
    assert resolved.values["greeting"] == "hi shop-dev-web"
    assert resolved.values["url"] == "http://shop.dev:8080"
    assert resolved.values["ports"] == [8080, 443]  # one expression keeps its type
    assert resolved.values["launch_template_name"] == "shop-dev-web"
    assert resolved.values["codedeploy_application"] == "shop"


def test_undefined_jinja_name_in_a_builder_key_names_file_and_line(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "port: 8080\n\nami_name: 'shop-{{ customer }}'\n")
    assert resolve_problems(repo) == [
        "vars/shop/dev/web.yml:3: ami_name: Jinja: 'customer' is undefined"
    ]


def test_a_name_only_ansible_knows_is_left_to_ansible(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml",
          "banner: 'hello {{ customer }}'\n"
          "motd: '{{ banner }} on {{ ansible_facts.hostname }}'\n"
          "site: '{{ app }}-{{ env }}'\n")
    resolved = loader(repo).resolve("shop", "dev", "web")
    assert resolved.values["banner"] == "hello {{ customer }}"
    assert resolved.values["motd"] == "{{ banner }} on {{ ansible_facts.hostname }}"
    assert resolved.values["site"] == "shop-dev"  # what the layers know is rendered
    assert resolved.by_ansible == {"banner", "motd"}
    assert "hello {{ customer }} (resolved by Ansible)" in resolved.to_text()
    assert resolved.to_json()["resolved_by_ansible"] == ["banner", "motd"]


def test_a_builder_key_may_not_lean_on_a_name_only_ansible_knows(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "suffix: '{{ ansible_date_time.epoch }}'\n"
                                        "launch_template_name: 'shop-{{ suffix }}'\n")
    (problem,) = resolve_problems(repo)
    assert problem.startswith("vars/shop/dev/web.yml:1: suffix: Jinja: 'ansible_date_time'")


def test_cycles_and_syntax_errors_stay_errors_outside_builder_keys(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "a: '{{ b }}'\nb: '{{ a }}'\nc: '{{ oops'\n")
    problems = resolve_problems(repo)
    assert any("refers to itself" in p for p in problems)
    assert any(p.startswith("vars/shop/dev/web.yml:3: c: Jinja syntax") for p in problems)


def test_self_reference_is_an_error(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "a: '{{ b }}'\nb: '{{ a }}'\n")
    problems = resolve_problems(repo)
    assert any("refers to itself" in p for p in problems)


def test_vault_files_are_never_layers(repo: Path) -> None:
    resolved = loader(repo).resolve("shop", "dev", "web")
    assert all(not str(f).endswith(".vault.yml") for f in resolved.files)
    assert "$ANSIBLE_VAULT;1.1;AES256" not in str(resolved.values)


def test_yaml_error_names_file_and_line(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "port: 8080\nbad: [1, 2\nother: 3\n")
    with pytest.raises(ConfigError) as caught:
        loader(repo).resolve("shop", "dev", "web")
    assert caught.value.format(repo).startswith("vars/shop/dev/web.yml:3: YAML:")


def test_duplicate_keys_are_an_error(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "port: 1\nport: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'port'") as caught:
        loader(repo).resolve("shop", "dev", "web")
    assert caught.value.problem.line == 2


def test_a_vars_file_must_be_a_mapping(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        loader(repo).resolve("shop", "dev", "web")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aws_account_id: '12345'", "aws_account_id: '12345' is not a 12-digit account id"),
        ("aws_account_id: 12345", "aws_account_id: 12345 is not 12 digits"),
        ("aws_region: Europe", "aws_region: 'Europe' is not a region"),
        ("aws_role_arn: not-an-arn", "aws_role_arn: 'not-an-arn' is not an IAM role ARN"),
        ("source_ami: ami-zz", "source_ami: 'ami-zz' is not an AMI id"),
        ("source_ami_filter: {owners: ['099720109477'], name: 'u*'}",
         "set exactly one of source_ami and source_ami_filter"),
        ("encrypt_boot: maybe", "encrypt_boot: must be true or false"),
        ("ami_keep: 0", "ami_keep: must be a whole number ≥ 1"),
        ("ami_ssm_parameter: /a//b", "ami_ssm_parameter: '/a//b' is not an SSM parameter"),
        ("ami_ssm_parameter: /aws/service/x", "is not an SSM parameter name (not beginning"),
        ("protect_released: sometimes", "protect_released: must be true or false"),
        ("ami_deprecate_after_days: -1", "ami_deprecate_after_days: must be a whole number ≥ 0"),
        ("ami_keep_launched_days: soon", "ami_keep_launched_days: must be a whole number ≥ 0"),
        ("rebuild_max_age_days: ten", "rebuild_max_age_days: must be a whole number ≥ 1"),
        ("packer_template: ../etc/passwd", "packer_template: '../etc/passwd' is not"),
        ("playbook: /etc/shadow", "playbook: '/etc/shadow' must be a path inside"),
        ("promote_from: nowhere", "promote_from: no env 'nowhere'"),
        ("promote_from: dev", "promote_from: an env can't promote from itself"),
        ("kms_key_id: alias/x\nencrypt_boot: false", "kms_key_id: is set but encrypt_boot"),
        ("components: web", "components: must be a non-empty list"),
        ("components: [Web]", "components: 'Web' must match"),
        ("comp: other", "comp: is built in"),
        ("refresh_min_healthy_percent: 120",
         "refresh_min_healthy_percent: must be a whole number from 0 to 100"),
        ("refresh_checkpoints: [50, 20]", "refresh_checkpoints: must be a rising list"),
        ("refresh_checkpoints: 50", "refresh_checkpoints: must be a rising list"),
        ("refresh_alarms: cpu-high", "refresh_alarms: must be a list of names"),
    ],
)
def test_validation_rules(repo: Path, text: str, expected: str) -> None:
    write(repo, "vars/shop/dev/web.yml", text + "\n")
    problems = resolve_problems(repo)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("vars/shop/dev/web.yml:") for p in problems if expected in p)


def test_required_keys(repo: Path) -> None:
    write(repo, "vars/shop/common/common.yml", "source_ami: ami-0123456789abcdef0\n")
    write(repo, "vars/shop/dev/common.yml", "components: [web]\n")
    problems = resolve_problems(repo)
    assert any("aws_region: required" in p for p in problems)
    assert any("aws_account_id: required" in p for p in problems)


def test_several_problems_reported_at_once(repo: Path) -> None:
    write(repo, "vars/shop/dev/web.yml", "aws_account_id: '1'\naws_region: nowhere\nami_keep: -1\n")
    problems = resolve_problems(repo)
    assert len(problems) == 3


def test_neither_source_ami_nor_filter(repo: Path) -> None:
    write(repo, "vars/shop/common/common.yml", "aws_region: eu-west-1\n")
    assert any("one of source_ami and source_ami_filter is required" in p
               for p in resolve_problems(repo))


def test_source_ami_filter_shape(repo: Path) -> None:
    write(repo, "vars/shop/common/common.yml",
          "aws_region: eu-west-1\nsource_ami_filter: {owners: [], name: 'x*', arch: x}\n")
    problems = resolve_problems(repo)
    assert any("unknown keys ['arch']" in p for p in problems)
    assert any("owners: must be a non-empty list" in p for p in problems)


@pytest.mark.parametrize("name", ["../x", "Shop", "-x", "a/b", ".hidden", ""])
def test_names_are_plain(repo: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="must match"):
        loader(repo).resolve(name, "dev", "web")
    with pytest.raises(ConfigError, match="must match"):
        loader(repo).resolve("shop", "dev", name)


def test_unknown_app_and_env(repo: Path) -> None:
    with pytest.raises(ConfigError, match="unknown app 'nope'"):
        loader(repo).resolve("nope", "dev", "web")
    with pytest.raises(ConfigError, match=r"unknown env 'qa'.*envs: dev"):
        loader(repo).resolve("shop", "qa", "web")


def test_envs_and_combos(repo: Path) -> None:
    write(repo, "vars/shop/prod/common.yml", "components: [web]\naws_account_id: '222222222222'\n")
    config = loader(repo)
    assert config.envs("shop") == ["dev", "prod"]
    assert [str(c) for c in config.combos()] == ["shop/dev/web", "shop/dev/worker", "shop/prod/web"]
    assert [str(c) for c in config.combos(comp="web")] == ["shop/dev/web", "shop/prod/web"]


def test_one_env_across_apps_leaves_out_apps_without_it(repo: Path) -> None:
    write(repo, "vars/blog/qa/common.yml", "components: [web]\n")
    config = loader(repo)
    assert [str(c) for c in config.combos(env="dev")] == ["shop/dev/web", "shop/dev/worker"]
    assert [str(c) for c in config.combos(env="qa")] == ["blog/qa/web"]
    with pytest.raises(ConfigError, match="no env 'prod' in any app"):
        list(config.combos(env="prod"))
    problems = list(loader(repo).combos("blog", "dev"))
    assert len(problems) == 1 and "unknown env 'dev' of app 'blog'" in str(problems[0])


def test_settings_are_typed(repo: Path) -> None:
    settings = loader(repo).resolve("shop", "dev", "web").settings
    assert settings.components == ("web", "worker")
    assert settings.aws_account_id == "111111111111"
    assert settings.encrypt_boot is True
    assert settings.playbook == "playbooks/shop/packer-web.yml"
    assert settings.source_ami == "ami-0123456789abcdef0"
    assert settings.source_ami_filter is None
