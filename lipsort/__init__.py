"""lipsort: neural networks with a certified Lipschitz constant that keep their
expressive power (GroupSort + norm-constrained layers; Anil, Lucas, Grosse, ICML 2019).

Public functions (pure, jit-able, differentiable):

    group_sort(x, group_size, axis=-1)   max_min(x, axis=-1)   full_sort(x, axis=-1)
    maxout(x, group_size, axis=-1)
    bjorck(w, num_iters, order=1, beta=0.5)   power_iteration(w, u, num_iters)   polar(w)
    project_linf(w, radius=1.0)   normalize_two_inf(w)   operator_norm(w, p)

Kernel convention: y = x @ kernel, kernel shape (in, out); see :mod:`lipsort.norms`.
Registries (one place to add each kind of thing): :mod:`lipsort.activations`,
:mod:`lipsort.constraints`, :mod:`lipsort.optim`, :mod:`lipsort.export` (record types),
:mod:`lipsort.tasks`.
"""
from lipsort.activations import ACTIVATIONS, full_sort, get_activation, group_sort, max_min, maxout
from lipsort.certify import certified_accuracy, lipschitz_lower_bound, lipschitz_upper_bound, pgd_attack
from lipsort.constraints import CONSTRAINTS
from lipsort.export import ExportedModel, export_model, load_export, numpy_forward, save_export
from lipsort.fast_orthogonal import fast_orthonormalize
from lipsort.layers import LipschitzDense
from lipsort.losses import LOSSES, get_loss
from lipsort.models import LipschitzMLP, MLPSpec, build_model
from lipsort.norms import normalize_two_inf, operator_norm, project_linf
from lipsort.orthogonal import bjorck, certified_scale, orthogonality_residual, polar, power_iteration

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "CONSTRAINTS", "LOSSES", "ExportedModel", "LipschitzDense", "LipschitzMLP", "MLPSpec",
    "bjorck", "build_model", "certified_accuracy", "certified_scale", "export_model", "fast_orthonormalize",
    "full_sort", "get_activation", "get_loss", "group_sort", "lipschitz_lower_bound", "lipschitz_upper_bound",
    "load_export", "max_min", "maxout", "normalize_two_inf", "numpy_forward", "operator_norm",
    "orthogonality_residual", "pgd_attack", "polar", "power_iteration", "project_linf", "save_export",
]
