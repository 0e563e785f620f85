"""The explicit planner: the user's text is the invocation grammar itself."""

from __future__ import annotations

from schemas import Plan

from .base import PlanRequest
from .grammar import parse_plan


class ExplicitPlanner:
    """`<module>B</module><instruction>segment the cup</instruction>…` typed by a person or a program."""

    name = "explicit"
    replans = False
    corrects = False  # the same text parses the same way: a refused plan goes straight back to the user

    def plan(self, request: PlanRequest) -> Plan:
        if request.round > 1:
            return Plan()  # one round: the user wrote the whole plan
        return parse_plan(request.text, workflows=request.workflows)
