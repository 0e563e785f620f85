"""The plan engine: compiled plans (from a planner's invocations or a workflow file), references and selectors,
validation against the tools' own schemas, rounds of ready steps, the runner over an executor, the step cache and
batches. The agent's graph and `vitron workflow` both run on it (docs/ARCHITECTURE.md).

    from workflows import Workflow

    flow = Workflow.load("cutout.yaml")
    result = flow.run({"photo": "cup.png"})
    print(result.outputs["result"])
"""

from . import rounds
from .batch import BatchResult, expand_items, run_batch
from .compiler import CompiledWorkflow, compile_invocations, compile_workflow, placeholder
from .export import export_session
from .library import find_workflow, load_workflow, saved_workflow, saved_workflows
from .resolve import Ambiguous, resolve_plan_inputs
from .runner import RunControl, StartedStep, StepRecorder, StepResult, StepRunner, Unrecorded, input_hashes
from .workflow import Runtime, Workflow, WorkflowResult, WorkflowRun

__all__ = [
    "Ambiguous",
    "BatchResult",
    "CompiledWorkflow",
    "RunControl",
    "Runtime",
    "StartedStep",
    "StepRecorder",
    "StepResult",
    "StepRunner",
    "Unrecorded",
    "Workflow",
    "WorkflowResult",
    "WorkflowRun",
    "compile_invocations",
    "compile_workflow",
    "expand_items",
    "export_session",
    "find_workflow",
    "input_hashes",
    "load_workflow",
    "placeholder",
    "resolve_plan_inputs",
    "rounds",
    "run_batch",
    "saved_workflow",
    "saved_workflows",
]
