"""``{% operator_result_list cl %}``: Django's ``{% result_list cl %}`` (same template,
same context) with the rows from :class:`scheduler_app.admin.joblist.RowRenderer`."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import (
    ResultList,
    result_headers,
    result_hidden_fields,
)
from django.contrib.admin.templatetags.base import InclusionAdminNode

register = template.Library()


def operator_result_list(cl: Any) -> dict[str, Any]:
    """What Django's ``result_list`` gives its template; each row one string of cells
    (the template writes a row's cells one after the other, so one joined string gives
    the same HTML)."""
    from scheduler_app.admin.joblist import RowRenderer

    headers = list(result_headers(cl))
    num_sorted_fields = sum(1 for h in headers if h["sortable"] and h["sorted"])
    if cl.formset:  # an editable list: Django's own rows (forms in the cells)
        from django.contrib.admin.templatetags.admin_list import results

        rows = list(results(cl))
    else:
        renderer = RowRenderer(cl)
        rows = [ResultList(None, [renderer.row(result)]) for result in cl.result_list]
    return {
        "cl": cl,
        "result_hidden_fields": list(result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": num_sorted_fields,
        "results": rows,
    }


@register.tag(name="operator_result_list")
def operator_result_list_tag(parser: Any, token: Any) -> InclusionAdminNode:
    return InclusionAdminNode(
        parser,
        token,
        func=operator_result_list,
        template_name="change_list_results.html",
        takes_context=False,
    )
