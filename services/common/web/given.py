"""`Given[T]`: how a handler declares a dependency registered on the app (its settings,
a store, the caller), by name and type. Litestar asks for named dependencies to be
marked (NamedDependency); the value is the app's own object, so it is not validated
again on every request (SkipValidation: a Protocol type could not be)."""

from __future__ import annotations

from typing import Annotated, TypeVar

from litestar.di import Dependency
from litestar.params import SkipValidationMarker

T = TypeVar("T")

Given = Annotated[T, Dependency(kind="named"), SkipValidationMarker()]
