"""Request and response shapes of the catalog API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Amount = Annotated[Decimal, msgspec.Meta(examples=["19.90"])]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", examples=["EUR"])]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://\S{1,2000}$")]
Status = Literal["active", "draft", "archived"]
Sort = Literal["newest", "price_asc", "price_desc"]


class SellerIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    email: Annotated[str, msgspec.Meta(max_length=254)] | None = None


class SellerPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name | None = None
    email: Annotated[str, msgspec.Meta(max_length=254)] | None = None


class SellerOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    email: str | None
    created_at: datetime
    updated_at: datetime


class CategoryIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    parent_id: Id | None = None


class CategoryPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name | None = None
    parent_id: Id | None = None
    # parent_id: null means "leave as is"; this moves the category to the top.
    make_root: bool = False


class CategoryOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    parent_id: int | None
    path: str  # "/1/7/42/": the ids from the root down to this one
    created_at: datetime
    updated_at: datetime


class ProductIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    price: Amount
    description: Annotated[str, msgspec.Meta(max_length=20_000)] = ""
    currency: Currency = "EUR"
    status: Status = "active"
    seller_id: Id | None = None
    category_id: Id | None = None
    image_urls: Annotated[list[Url], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    stock: Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)] = 0


class ProductPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name | None = None
    price: Amount | None = None
    description: Annotated[str, msgspec.Meta(max_length=20_000)] | None = None
    currency: Currency | None = None
    status: Status | None = None
    seller_id: Id | None = None
    category_id: Id | None = None
    image_urls: Annotated[list[Url], msgspec.Meta(max_length=20)] | None = None


class SellerRef(msgspec.Struct):
    id: int
    name: str


class CategoryRef(msgspec.Struct):
    id: int
    name: str
    path: str


class ProductOut(msgspec.Struct, kw_only=True):
    id: int
    name: str
    description: str
    price: str
    currency: str
    status: Status
    seller: SellerRef | None
    category: CategoryRef | None
    image_urls: list[str]
    current_stock: int
    created_at: datetime
    updated_at: datetime


class ProductPage(msgspec.Struct, kw_only=True, omit_defaults=True):
    items: list[ProductOut]
    next_cursor: str | None = None
    # Offset pagination only:
    page: int | None = None
    limit: int | None = None
    total: int | None = None


class SellerPage(msgspec.Struct, kw_only=True):
    items: list[SellerOut]
    next_cursor: str | None


class CategoryList(msgspec.Struct, kw_only=True):
    items: list[CategoryOut]
