"""SSM as AWS pages it: DescribeParameters honours MaxResults (1-50, default 10);
moto 5.2.5 always answers 10 a page."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult

_DEFAULT_PAGE, _LARGEST_PAGE = 10, 50


def describe_parameters_response(self: Any) -> ActionResult:
    """DescribeParameters, MaxResults a page."""
    page_size = min(int(self._get_param("MaxResults") or _DEFAULT_PAGE), _LARGEST_PAGE)
    start = int(str(self._get_param("NextToken") or "0").strip() or "0")
    found = self.ssm_backend.describe_parameters(self._get_param("Filters"),
                                                 self._get_param("ParameterFilters"))
    page = found[start:start + page_size]
    response: dict[str, Any] = {
        "Parameters": [parameter.describe_response_object(False) for parameter in page]}
    if start + page_size < len(found):
        response["NextToken"] = str(start + page_size)
    return ActionResult(response)
