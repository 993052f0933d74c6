"""A study file (`regrow study STUDY.yaml`) as typed dataclasses, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regrow.errors import RegrowError


@dataclass
class SourceSpec:
    """The model to compress: an HF folder, or a base the study pre-trains itself."""

    model: str | None = None
    pretrain: dict[str, Any] | None = None  # {config: {model fields}, mixture: {...}, steps, schedule: {...}}


@dataclass
class StudyData:
    path: str = ""
    old: list[str] = field(default_factory=list)  # what the source knows (replay, forgetting)
    new: list[str] = field(default_factory=list)  # what continued training adapts to
    seq_len: int = 128


@dataclass
class Grid:
    """Every combination is one cell; lists of one value fix that axis."""

    method: list[str] = field(default_factory=lambda: ["activation"])
    target: list[dict[str, Any]] = field(default_factory=list)  # shape specs (see `regrow prune --target`)
    target_ratio: list[float] = field(default_factory=list)
    reinit: list[str] = field(default_factory=lambda: ["none"])
    schedule: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "cosine"}])
    replay: list[float] = field(default_factory=lambda: [0.0])
    tokens: list[int] = field(default_factory=list)  # continued-training budgets
    # data.dynamic of the continued-training runs (null: fixed mixture); cells whose mixture has a
    # single domain get no dynamic variant when null is also listed (nothing to re-weight)
    dynamic: list[dict[str, Any] | None] = field(default_factory=lambda: [None])
    seed: list[int] = field(default_factory=lambda: [0])


@dataclass
class Controls:
    scratch: bool = True  # the target shape trained from a random init on the same data and budgets
    source: bool = True  # the unpruned source continued on the same data and budgets


@dataclass
class StudyConfig:
    out_dir: str = "studies/study"
    tokenizer: str | None = None  # default: the source model's
    source: SourceSpec = field(default_factory=SourceSpec)
    data: StudyData = field(default_factory=StudyData)
    grid: Grid = field(default_factory=Grid)
    controls: Controls = field(default_factory=Controls)
    prune: dict[str, Any] = field(default_factory=dict)  # PruneConfig keys shared by every pruning run
    train: dict[str, Any] = field(default_factory=dict)  # train.* keys shared by every training run

    def validate(self, methods: list[str], reinits: list[str]) -> None:
        if (self.source.model is None) == (self.source.pretrain is None):
            raise RegrowError("set exactly one of source.model (an HF folder) and source.pretrain (a base to pre-train)")
        if self.source.pretrain is not None and self.tokenizer is None:
            raise RegrowError("source.pretrain builds a new model, which needs a tokenizer: set `tokenizer`")
        if not self.data.path:
            raise RegrowError("data.path is not set; point it at a folder made by `regrow data prepare`")
        if not self.data.new:
            raise RegrowError("data.new is empty; name the domain(s) continued training adapts to")
        g = self.grid
        for name, values in (("grid.method", g.method), ("grid.reinit", g.reinit), ("grid.schedule", g.schedule),
                             ("grid.replay", g.replay), ("grid.tokens", g.tokens), ("grid.seed", g.seed),
                             ("grid.dynamic", g.dynamic)):
            if not values:
                raise RegrowError(f"{name} is empty: the grid has no cells; give at least one value")
        if not g.target and not g.target_ratio:
            raise RegrowError("the grid has no target: give grid.target (shapes) or grid.target_ratio (fractions)")
        for method in g.method:
            if method not in methods:
                raise RegrowError(f"unknown method {method!r} in grid.method; allowed: {', '.join(methods)}")
        for reinit in g.reinit:
            if reinit not in reinits:
                raise RegrowError(f"unknown reinit {reinit!r} in grid.reinit; allowed: {', '.join(reinits)}")
        for replay in g.replay:
            if not 0 <= replay < 1:
                raise RegrowError(f"grid.replay {replay} is not a fraction; allowed: 0 <= replay < 1")
            if replay > 0 and not self.data.old:
                raise RegrowError("grid.replay > 0 needs data.old: the domain(s) to replay")
        if self.data.seq_len < 1:
            raise RegrowError(f"data.seq_len is {self.data.seq_len}; it must be >= 1")
