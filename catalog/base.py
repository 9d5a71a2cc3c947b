"""The one base model of every request body and stored definition the catalog validates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A field the model does not know is a 422, not silently dropped: a misspelled key in a
    definition would otherwise become its default. Aliased fields (``schema``, ``with``, ``if``,
    Python keywords or shadowed names) accept their Python name too, so services can build models
    by keyword."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
