"""IAM enforcement in the emulator: the principals `builder local up --enforce-iam`
installs and moto's own authorisation switched on.

moto authorises a request when `INITIAL_NO_AUTH_ACTION_COUNT` allows (here: 0 when on,
unlimited when off) against the policies of the caller: an IAM user by its access key,
or an assumed role by its session credentials. Local mode's dummy source credentials
become the access key of a CI user in the CI account; each env's role is made in its
own account with the generated policy inline; assuming it works across accounts as it
does without enforcement.

What moto checks, and what it does not (so what local mode proves):
- actions: every call's `service:Action` must be allowed by a statement — this is what
  catches a permission missing from the calls table or the generated policy;
- resources: moto knows the resource only for STS, IAM and SQS calls; for every other
  call it asks for `*`, which no ARN-scoped statement would match, so here a statement's
  Resource matches any call moto cannot name a resource for (resource scoping is checked
  by `builder iam-policy`'s tests and, on real AWS, by `builder doctor`);
- conditions: moto evaluates them only in trust policies, and the cross-account trust of
  an env role is not evaluated at all (moto looks the role up in the caller's account);
- callers: in the test suite, calls made outside every builder step (tests making and
  reading resources, as Terraform or an operator would) carry a header and are let
  through; builder's calls and Packer's are judged.
"""

from __future__ import annotations

import json
import math
from typing import Any
from xml.sax.saxutils import escape

from moto import settings
from moto.core.exceptions import JsonRESTError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.iam.access_control import (
    IAMPolicy,
    IAMPolicyStatement,
    IAMRequest,
    IAMRequestBase,
    PermissionResult,
)
from moto.iam.models import iam_backends
from moto.iam.responses import IamResponse
from werkzeug.exceptions import HTTPException

from builder.aws.calls import OUTSIDE_HEADER

PARTITION = "aws"
CI_ACCOUNT = DEFAULT_ACCOUNT_ID
CI_USER = "builder-ci"
POLICY_NAME = "builder"

# Services that speak JSON: moto answers their refusals in IAM's XML, which botocore
# cannot read (the caller would see "403" and a page of XML), so they get AWS's JSON
# error; EC2 gets EC2's own error document (Packer's SDK reads no other).
_JSON_SERVICES = frozenset({"codedeploy", "dynamodb", "kms", "ssm"})


class _Ec2Refusal(HTTPException):
    """EC2's UnauthorizedOperation, in EC2's error document."""

    code = 403

    def __init__(self, message: str):
        super().__init__()
        self.description = (
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
            f"<Code>UnauthorizedOperation</Code><Message>{escape(message)}</Message>"
            "</Error></Errors><RequestID>builder-local</RequestID></Response>")

_state = {"enforced": False}


def apply() -> None:
    """Resource-scoped statements match calls whose resource moto does not know."""
    original = IAMPolicyStatement._check_element_matches

    def matches(self: IAMPolicyStatement, statement_element: Any, value: str) -> bool:
        if statement_element == "Resource" and value == "*":
            return True
        return original(self, statement_element, value)

    IAMPolicyStatement._check_element_matches = matches  # type: ignore[method-assign]

    refuse = IAMRequest._raise_access_denied

    def refuse_as_the_service_does(self: IAMRequest) -> None:
        message = f"User: {self._access_key.arn} is not authorized to perform: {self._action}"
        if self._service in _JSON_SERVICES:
            raise JsonRESTError("AccessDeniedException", message)
        if self._service == "ec2":
            raise _Ec2Refusal(f"You are not authorized to perform this operation. {message}")
        refuse(self)

    IAMRequest._raise_access_denied = refuse_as_the_service_does  # type: ignore[method-assign]

    judge = IAMRequestBase.check_action_permitted

    def judge_builder_calls(self: IAMRequestBase, resource: str) -> None:
        # A test's own call (builder.aws.calls.OUTSIDE_HEADER): it plays Terraform.
        if self._headers.get(OUTSIDE_HEADER):
            return
        judge(self, resource)

    IAMRequestBase.check_action_permitted = judge_builder_calls  # type: ignore[method-assign]
    IamResponse.simulate_principal_policy = _simulate  # type: ignore[attr-defined]


def _simulate(self: IamResponse) -> ActionResult:
    """iam:SimulatePrincipalPolicy for a role, which moto lacks: each action judged
    against the role's inline and attached policies the way enforcement judges it (by
    action; `builder doctor` uses it)."""
    source = str(self._get_param("PolicySourceArn"))
    backend = iam_backends[source.split(":")[4]][PARTITION]
    role = backend.get_role_by_arn(source)
    documents: list[Any] = [backend.get_role_policy(role.name, name)[1]
                            for name in backend.list_role_policies(role.name)]
    documents += backend.list_attached_role_policies(role.name)[0]
    results = []
    for action in self._get_param("ActionNames") or []:
        verdicts = [IAMPolicy(document).is_action_permitted(action) for document in documents]
        decision = ("explicitDeny" if PermissionResult.DENIED in verdicts else
                    "allowed" if PermissionResult.PERMITTED in verdicts else "implicitDeny")
        results.append({"EvalActionName": action, "EvalResourceName": "*",
                         "EvalDecision": decision})
    return ActionResult({"EvaluationResults": results, "IsTruncated": False})


def enforced() -> dict[str, Any]:
    """Whether enforcement is on, and the CI user local mode's credentials stand for."""
    return {"enforced": _state["enforced"], "ci_user_arn": ci_user_arn()}


def ci_user_arn() -> str:
    """The user local mode's fixed credentials belong to while enforcement is on."""
    return f"arn:aws:iam::{CI_ACCOUNT}:user/{CI_USER}"


def set_enforcement(body: dict[str, Any]) -> dict[str, Any]:
    """{"on": bool, "access_key"?, "secret_key"?, "ci_policy"?, "roles"?: [{"arn",
    "trust", "policy"}]}: install the principals given, then switch enforcement."""
    if body.get("roles") is not None:
        _ci_user(str(body["access_key"]), str(body["secret_key"]), body["ci_policy"])
        for role in body["roles"]:
            _role(str(role["arn"]), role["trust"], role["policy"])
    on = bool(body.get("on"))
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if on else math.inf
    _state["enforced"] = on
    return enforced()


def _ci_user(access_key: str, secret_key: str, policy: dict[str, Any]) -> None:
    iam = iam_backends[CI_ACCOUNT][PARTITION]
    if not any(user.name == CI_USER for user in iam.list_users("/", None, None)):
        iam.create_user(region_name="us-east-1", user_name=CI_USER)
        key = iam.create_access_key(CI_USER)
        del iam.access_keys[key.physical_resource_id]
        # The fixed local credentials every builder command signs with.
        key.access_key_id, key.secret_access_key = access_key, secret_key
        iam.access_keys[key.physical_resource_id] = key
    iam.put_user_policy(CI_USER, POLICY_NAME, json.dumps(policy))


def _role(arn: str, trust: dict[str, Any], policy: dict[str, Any]) -> None:
    account = arn.split(":")[4]
    path, _, name = arn.split(":", 5)[5].removeprefix("role").rpartition("/")
    iam = iam_backends[account][PARTITION]
    if not any(role.name == name for role in iam.get_roles()):
        iam.create_role(name, json.dumps(trust), path=f"{path}/" if path else "/",
                        permissions_boundary=None, description="builder (local mode)",
                        tags=[], max_session_duration=None)
    else:
        iam.update_assume_role_policy(name, json.dumps(trust))
    iam.put_role_policy(name, POLICY_NAME, json.dumps(policy))
