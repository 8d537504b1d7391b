import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lipsort import activations as acts
from lipsort import full_sort, group_sort, max_min, maxout

SHAPES_AXES_GROUPS = [
    ((3, 12), -1, 3),
    ((3, 12), 1, 4),
    ((6, 5), 0, 2),
    ((2, 6, 4), 1, 6),
    ((2, 6, 4), -3, 2),
    ((4, 8), -1, 1),
]


@pytest.mark.parametrize("shape,axis,group", SHAPES_AXES_GROUPS)
def test_group_sort_sorts_each_group_and_permutes_it(shape, axis, group):
    x = jax.random.normal(jax.random.key(0), shape)
    y = np.asarray(group_sort(x, group, axis))
    assert y.shape == x.shape
    xm = np.moveaxis(np.asarray(x), axis, -1)
    ym = np.moveaxis(y, axis, -1)
    xg = xm.reshape(xm.shape[:-1] + (-1, group))
    yg = ym.reshape(ym.shape[:-1] + (-1, group))
    assert np.all(np.diff(yg, axis=-1) >= 0), "each group must be sorted ascending"
    np.testing.assert_array_equal(np.sort(xg, axis=-1), yg)  # same multiset per group


def test_group_sort_with_ties_is_still_a_permutation():
    x = jnp.array([[1.0, 1.0, 0.0, 0.0, 2.0, 2.0]])
    np.testing.assert_array_equal(max_min(x), x)
    jac = jax.jacrev(lambda v: max_min(v)[0])(x)[:, 0, :]
    np.testing.assert_array_equal(np.sort(np.asarray(jac).sum(0)), np.ones(6))
    assert set(np.unique(np.asarray(jac))) <= {0.0, 1.0}


def test_named_variants():
    x = jax.random.normal(jax.random.key(1), (5, 8))
    np.testing.assert_array_equal(max_min(x), group_sort(x, 2))
    np.testing.assert_array_equal(full_sort(x), jnp.sort(x, axis=-1))
    np.testing.assert_array_equal(full_sort(x, axis=0), jnp.sort(x, axis=0))
    np.testing.assert_array_equal(maxout(x, 4), x.reshape(5, 2, 4).max(-1))
    assert maxout(x[:4], 2, axis=0).shape == (2, 8)


@pytest.mark.parametrize("name,group", [("group_sort", 4), ("max_min", None), ("full_sort", None), ("abs", None)])
def test_gradient_norm_preservation(name, group):
    act = acts.get_activation(name, group)
    keys = jax.random.split(jax.random.key(2), 20)
    for k in keys:
        kx, kg = jax.random.split(k)
        x = jax.random.normal(kx, (16,))
        g = jax.random.normal(kg, (16,))
        _, vjp = jax.vjp(act, x)
        (jt_g,) = vjp(g)
        np.testing.assert_allclose(jnp.linalg.norm(jt_g), jnp.linalg.norm(g), rtol=1e-6)


def test_relu_and_maxout_attenuate_gradient_norm():
    """The comparison the paper rests on: these are 1-Lipschitz but lose gradient norm."""
    x = jax.random.normal(jax.random.key(3), (16,))
    g = jnp.ones((16,))
    for name, group in (("relu", None), ("maxout", 2)):
        act = acts.get_activation(name, group)
        out, vjp = jax.vjp(act, x)
        (jt_g,) = vjp(jnp.ones_like(out))
        assert jnp.linalg.norm(jt_g) < jnp.linalg.norm(g) - 1e-3


@pytest.mark.parametrize("name", acts.ACTIVATIONS)
@pytest.mark.parametrize("p", [2, np.inf])
def test_every_activation_is_1_lipschitz_under_search(name, p):
    """Gradient ascent on ‖σ(x) − σ(y)‖_p / ‖x − y‖_p finds no ratio above 1."""
    from lipsort.certify import pair_ratio_search

    act = acts.get_activation(name, 4)
    x0 = jax.random.normal(jax.random.key(4), (16, 8))
    found = pair_ratio_search(lambda x: act(x), x0, p, p, jax.random.key(5), steps=60, lr=0.05)
    assert found <= 1.0 + 1e-5
    assert found > 0.5  # the search does move: GroupSort pairs reach ratio 1


def test_registry_covers_every_name():
    x = jax.random.normal(jax.random.key(6), (3, 8))
    for name in acts.ACTIVATIONS:
        y = acts.get_activation(name, 2)(x)
        assert y.shape[-1] == acts.activation_output_width(name, 8, 2)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown activation 'sigmoid'.*group_sort"):
        acts.get_activation("sigmoid")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda x: group_sort(x, 3), "group_size=3 does not divide"),
        (lambda x: maxout(x, 5), "group_size=5 does not divide"),
        (lambda x: group_sort(x, 0), "group_size must be a positive integer"),
        (lambda x: group_sort(x, 2.0), "group_size must be a positive integer"),
        (lambda x: group_sort(x, 2, axis=3), "axis=3 is out of range"),
        (lambda x: acts.get_activation("group_sort")(x), "needs a group_size"),
        (lambda x: acts.activation_output_width("max_min", 7), "does not divide the layer width"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(jnp.ones((2, 8)))


def test_jit_and_vmap():
    f = jax.jit(lambda x: group_sort(x, 4, axis=0))
    x = jax.random.normal(jax.random.key(7), (8, 3))
    np.testing.assert_array_equal(f(x), group_sort(x, 4, axis=0))
    v = jax.vmap(lambda col: max_min(col), in_axes=1, out_axes=1)(x)
    np.testing.assert_array_equal(v, max_min(x, axis=0))
