"""From a stream's operator graph to stages: chains of operators run by parallel instances.

Operators chain into their input's stage (no hop) unless they need a repartition: a keyed
operator (``reduce``, windows) whose input is not already partitioned by the current key, a
change of parallelism, a ``union``, or (on transports that ask for it) an operator that must
run in the driver process. Stateless operators inherit their input's parallelism; keyed ones
take ``run(parallelism=...)`` unless ``set_parallelism`` says otherwise.

On transports that run stages elsewhere (``driver_boundaries``), sources of in-memory data
(collections, local files) and sinks that call back into the program run in the driver;
other operators may chain into a driver stage but a driver-only one never leaves it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from eventray._model.errors import ConfigError

from .operator import StreamOp

if TYPE_CHECKING:
    from .checkpoints import CheckpointSettings
    from .readers import Reader

DEAD_LETTERS = "dead-letters"
Exchange = Literal["hash", "rebalance"]
Placement = Literal["any", "driver"]

_node_ids = itertools.count()


@dataclass(eq=False)
class Node:
    """One step of the logical graph a ``Stream`` describes."""

    kind: Literal["source", "op", "union"]
    parents: tuple[Node, ...] = ()
    op: StreamOp | None = None
    reader: Reader | None = None
    parallelism: int | None = None
    driver_only: bool = False
    id: int = field(default_factory=lambda: next(_node_ids))

    @property
    def label(self) -> str:
        if self.kind == "source":
            assert self.reader is not None
            return self.reader.name
        if self.kind == "union":
            return "union"
        assert self.op is not None
        return self.op.name


@dataclass(eq=False)
class StagePlan:
    """A chain of operators and the instances that run it."""

    index: int
    parallelism: int
    reader: Reader | None = None
    ops: list[StreamOp] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    exchange: Exchange = "rebalance"
    outputs: list[int] = field(default_factory=list)
    placement: Placement = "any"
    keyed: bool = False  # instances hold disjoint key ranges of the current key
    labels: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "+".join(self.labels) or f"stage{self.index}"

    def upstream_instances(self, stages: list[StagePlan]) -> int:
        """How many instances send to each instance of this stage (each sends one end)."""
        return sum(stages[i].parallelism for i in self.inputs)


@dataclass(eq=False)
class JobPlan:
    """Everything a transport needs to run a stream."""

    name: str
    stages: list[StagePlan]
    batch_size: int
    linger: float
    on_error: str
    checkpoints: CheckpointSettings | None = None

    def instance_names(self) -> list[str]:
        """``<job>.<stage>.<index>`` of every stage instance, in stage order."""
        return [f"{self.name}.{name}.{index}"
                for stage, name in zip(self.stages, self.stage_names(), strict=True)
                for index in range(stage.parallelism)]

    def topics_used(self) -> set[str]:
        """Every bus topic the stages read or publish to, and the dead-letter topic."""
        names = {DEAD_LETTERS}
        for stage in self.stages:
            if stage.reader is not None:
                names.update(stage.reader.topics())
            for op in stage.ops:
                names.update(op.topics())
        return names

    def stage_names(self) -> list[str]:
        names: list[str] = []
        for stage in self.stages:
            name = stage.name
            while name in names:
                name += "'"
            names.append(name)
        return names


def _topological(terminal: Node) -> list[Node]:
    order: list[Node] = []
    seen: set[int] = set()

    def visit(node: Node) -> None:
        if node.id in seen:
            return
        seen.add(node.id)
        for parent in node.parents:
            visit(parent)
        order.append(node)

    visit(terminal)
    return order


def compile_stages(
    terminal: Node, parallelism: int, *, driver_boundaries: bool = False
) -> list[StagePlan]:
    """The stages running ``terminal`` and everything it reads from."""
    if not isinstance(parallelism, int) or parallelism < 1:
        raise ConfigError(f"must be a positive int, got {parallelism!r}", field="parallelism")
    stages: list[StagePlan] = []
    stage_of: dict[int, StagePlan] = {}

    def new_stage(p: int, inputs: list[StagePlan], exchange: Exchange, *,
                  placement: Placement = "any") -> StagePlan:
        stage = StagePlan(len(stages), p, inputs=[s.index for s in inputs], exchange=exchange,
                          placement=placement, keyed=exchange == "hash")
        for upstream in inputs:
            upstream.outputs.append(stage.index)
        stages.append(stage)
        return stage

    for node in _topological(terminal):
        if node.kind == "source":
            assert node.reader is not None
            local = driver_boundaries and node.reader.driver_local
            stage = new_stage(node.parallelism or 1, [], "rebalance",
                              placement="driver" if local else "any")
            node.reader.check_parallelism(stage.parallelism)
            stage.reader = node.reader
        elif node.kind == "union":
            inputs = [stage_of[parent.id] for parent in node.parents]
            stage = new_stage(node.parallelism or max(s.parallelism for s in inputs), inputs,
                              "rebalance")
        else:
            assert node.op is not None
            parent = stage_of[node.parents[0].id]
            op = node.op
            wanted = node.parallelism or (parallelism if op.keyed else parent.parallelism)
            placement: Placement = "driver" if driver_boundaries and node.driver_only else "any"
            if placement == "driver":
                wanted = 1
            chain = (
                wanted == parent.parallelism
                and placement in ("any", parent.placement)
                and (not op.keyed or wanted == 1 or parent.keyed)
            )
            if chain:
                stage = parent
            else:
                stage = new_stage(wanted, [parent], "hash" if op.keyed else "rebalance",
                                  placement=placement)
            stage.ops.append(op)
            if op.rekeys:
                stage.keyed = False  # partitioned by the old key, if any
        stage.labels.append(node.label)
        stage_of[node.id] = stage
    return stages
