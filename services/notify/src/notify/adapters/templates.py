"""Message templates (Jinja2), one per kind and medium, in `notify/templates/`.

- `<kind>.email.j2`: the first line is the subject, the rest the plain-text body;
- `<kind>.text.j2`: SMS and push. A text goes to a lock screen or a shared phone, so these
  templates are given no name, no treatment, no diagnosis and no medication to show: their
  context is a reduced one (see `notify.service_layer.delivery`), and a missing variable is an
  error rather than an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


class Templates:
    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("notify", "templates"),
            undefined=StrictUndefined,
            autoescape=False,  # noqa: S701 - plain text only: nothing is ever rendered as HTML
            keep_trailing_newline=False,
        )

    def email(self, kind: str, context: dict[str, Any]) -> Rendered:
        text = self._env.get_template(f"{kind}.email.j2").render(context)
        subject, _, body = text.partition("\n")
        return Rendered(subject=subject.strip(), body=body.strip() + "\n")

    def text(self, kind: str, context: dict[str, Any]) -> str:
        body = self._env.get_template(f"{kind}.text.j2").render(context)
        return " ".join(body.split())
