"""The 3D-ST model as one torch module: a frozen teacher, the students, the standardisation.

Equations of the paper (section 3.2), each in one named place:

* standardised targets ``(f_T - μ) / σ`` with μ, σ over the training points (:meth:`targets`);
* the student regression loss of equation (5), summed over students (:meth:`regression_loss`);
* a point's anomaly, equation (6), as the root mean square over students of
  ``‖f_S - (f_T - μ) / σ‖`` (:meth:`anomaly`), which reduces to (6) for one student.

Pure torch: no I/O, no KeOps, no numpy; graphs come in as :class:`NeighborGraph`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ._graph import NeighborGraph
from .nn import DescriptorNet, fused_geometric_terms

# σ of a descriptor channel that is constant over the training points is floored here.
_STD_FLOOR = 1e-6


class StudentTeacherModel(nn.Module):
    """Teacher, students and the teacher's standardisation, as buffers and submodules.

    Parameters
    ----------
    teacher : DescriptorNet
        The pretrained (or random) teacher; the model keeps it frozen.
    students : list of DescriptorNet
        Students of the teacher's architecture.
    """

    def __init__(self, teacher: DescriptorNet, students: list[DescriptorNet]):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.students = nn.ModuleList(students)
        self.register_buffer("feature_mean", torch.zeros(teacher.d))
        self.register_buffer("feature_std", torch.ones(teacher.d))

    @classmethod
    def for_teacher(cls, teacher: DescriptorNet, n_students: int) -> "StudentTeacherModel":
        """A copy of ``teacher`` (never the caller's module) and freshly initialised students.

        Students draw their weights from torch's global generator: seed it around the call.
        """
        students = [
            DescriptorNet(teacher.d, teacher.n_blocks, absolute_coordinates=teacher.absolute_coordinates)
            for _ in range(n_students)
        ]
        return cls(copy.deepcopy(teacher), students)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # frozen, whatever the students do
        return self

    @torch.no_grad()
    def standardize(self, descriptors: torch.Tensor) -> None:
        """Set μ and σ from teacher descriptors of the training points, shape (N, d)."""
        self.feature_mean.copy_(descriptors.mean(0))
        self.feature_std.copy_(descriptors.std(0).clamp_min(_STD_FLOOR))

    def standardized(self, descriptors: torch.Tensor) -> torch.Tensor:
        """``(f_T - μ) / σ`` of teacher descriptors."""
        return (descriptors - self.feature_mean) / self.feature_std

    def targets(self, graph: NeighborGraph, geometric=None) -> torch.Tensor:
        """Standardised teacher descriptors of a graph's points, shape (n, d)."""
        return self.standardized(self.teacher(graph, geometric))

    def regression_loss(self, graph: NeighborGraph, targets: torch.Tensor) -> torch.Tensor:
        """Equation (5) per student (mean over points of the squared error), summed over students."""
        geometric = fused_geometric_terms(list(self.students), graph)
        return sum((student(graph, geo) - targets).pow(2).sum(1).mean() for student, geo in zip(self.students, geometric))

    def anomaly(self, graph: NeighborGraph, targets: torch.Tensor | None = None, student_geometric=None) -> torch.Tensor:
        """Equation (6): RMS over students of ``‖f_S - targets‖`` per point, shape (n,).

        Without ``targets``, teacher and students share one pass over the graph's edges
        (``student_geometric`` passes the students' share of such a pass in).
        """
        if targets is None:
            geo_teacher, *student_geometric = fused_geometric_terms([self.teacher, *self.students], graph)
            targets = self.targets(graph, geo_teacher)
        if student_geometric is None:
            student_geometric = [None] * len(self.students)
        squared = sum(
            (student(graph, geo) - targets).pow(2).sum(1) for student, geo in zip(self.students, student_geometric)
        )
        return (squared / len(self.students)).sqrt()
