"""Convolutions: the operator, its certified bound, the conv constraints, conv nets and their export."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lipsort import activations as acts
from lipsort import certify, conv_constraints, convolution, export, models
from lipsort.conv_models import LipschitzConv

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("padding", convolution.PADDINGS)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_numpy_conv_matches_jax_and_the_bound_holds(padding, stride, k):
    x = RNG.normal(size=(2, 8, 6, 3))
    kernel = RNG.normal(size=(k, k, 3, 4))
    y = np.asarray(convolution.conv(jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32), (stride, stride),
                                    padding))
    np.testing.assert_allclose(y, convolution.conv_numpy(x, kernel, (stride, stride), padding), atol=2e-5)
    assert y.shape[1:3] == tuple(convolution.output_size(s, k, stride, padding) for s in (8, 6))
    estimate = convolution.conv_operator_norm_estimate(kernel, (8, 6, 3), (stride, stride), padding, iters=200)
    bound = convolution.certified_conv_norm(kernel, (8, 6), padding, (stride, stride))
    assert estimate <= bound * (1 + 1e-5)
    if padding == "circular":  # exact (the stride divides 8 and 6): the power iteration reaches it
        assert estimate >= bound * (1 - 1e-4)


def _operator_norm(kernel, input_hw, strides, padding):
    """σ_max of the convolution's explicit matrix (its columns: the images of the basis)."""
    h, w = input_hw
    c_in = kernel.shape[2]
    basis = np.eye(h * w * c_in).reshape(h * w * c_in, h, w, c_in)
    matrix = convolution.conv_numpy(basis, kernel, strides, padding).reshape(h * w * c_in, -1)
    return np.linalg.svd(matrix, compute_uv=False)[0]


@pytest.mark.parametrize("padding,input_hw,strides,k", [
    ("circular", (8, 6), (2, 2), 3), ("circular", (6, 6), (3, 2), 4), ("circular", (8, 8), (2, 2), 2),
    ("zeros", (8, 6), (2, 2), 3), ("zeros", (7, 5), (2, 3), 3), ("zeros", (8, 8), (2, 2), 2),
    ("circular", (7, 6), (2, 2), 3),  # 2 ∤ 7: the stride-1 bound along that axis
])
def test_strided_bound_is_exact_for_circular_and_bounds_zero_padding(padding, input_hw, strides, k):
    kernel = np.random.default_rng(k).normal(size=(k, k, 2, 3))
    exact = _operator_norm(kernel, input_hw, strides, padding)
    bound = convolution.certified_conv_norm(kernel, input_hw, padding, strides)
    stride_one = convolution.certified_conv_norm(kernel, input_hw, padding)
    assert exact <= bound
    if padding == "circular":  # the same torus: the strided rows are a subset of the stride-1 ones
        assert bound <= stride_one * (1 + 1e-12)
        if convolution.certifying_strides(input_hw, padding, strides) == strides:
            np.testing.assert_allclose(bound, exact, rtol=1e-9)
    if k == 2 and strides == (2, 2):  # non-overlapping patches: the norm is that of the 4·c_in × c_out matrix
        np.testing.assert_allclose(exact, np.linalg.norm(kernel.reshape(-1, 3), 2), rtol=1e-9)
        assert bound < 0.9 * stride_one  # the stride-1 bound is far looser here


def test_circular_bound_folds_a_kernel_larger_than_the_torus():
    kernel = RNG.normal(size=(5, 5, 2, 2))
    bound = convolution.certified_conv_norm(kernel, (3, 3), "circular")
    estimate = convolution.conv_operator_norm_estimate(kernel, (3, 3, 2), padding="circular", iters=300)
    np.testing.assert_allclose(estimate, bound, rtol=1e-4)


def test_compose_kernels_is_the_composition_up_to_a_shift():
    a, b = RNG.normal(size=(2, 3, 3, 4)), RNG.normal(size=(3, 2, 4, 5))
    x = RNG.normal(size=(1, 9, 9, 3))
    composed = convolution.conv_numpy(convolution.conv_numpy(x, a, padding="circular"), b, padding="circular")
    once = convolution.conv_numpy(x, convolution.compose_kernels(a, b, np), padding="circular")
    gaps = [np.abs(np.roll(once, (i, j), (1, 2)) - composed).max() for i in (-1, 0, 1) for j in (-1, 0, 1)]
    assert min(gaps) < 1e-10


def test_kernel_gram_and_aol_agree_in_jax_and_numpy():
    kernel = RNG.normal(size=(3, 3, 3, 4))
    gram = convolution.kernel_gram(kernel, np)
    t = (1, 2)  # offset (−1, 0): G[t, i, j] = Σ_{u, o} K[u, i, o] K[u + t, j, o], by hand
    by_hand = sum(np.outer(kernel[u, v, :, o], kernel[u - 1, v, :, o]) for u in range(1, 3) for v in range(3)
                  for o in range(4))
    np.testing.assert_allclose(gram[t], by_hand, atol=1e-12)
    np.testing.assert_allclose(convolution.kernel_gram(jnp.asarray(kernel)), gram, atol=1e-4)
    np.testing.assert_allclose(convolution.aol_rescale(jnp.asarray(kernel)), convolution.aol_rescale_numpy(kernel),
                               rtol=1e-5, atol=1e-7)
    for padding in convolution.PADDINGS:
        assert convolution.certified_conv_norm(convolution.aol_rescale_numpy(kernel), (7, 7), padding) <= 1.0


def test_space_to_depth_is_the_documented_permutation():
    x = RNG.normal(size=(2, 4, 6, 3))
    y = convolution.space_to_depth(x, 2)
    i, j, di, dj, c = 1, 2, 1, 0, 2
    assert y[0, i, j, (di * 2 + dj) * 3 + c] == x[0, i * 2 + di, j * 2 + dj, c]
    assert sorted(y.ravel()) == sorted(x.ravel())
    with pytest.raises(ValueError, match="divisible by 2"):
        convolution.space_to_depth(x[:, :3], 2)


def test_bcop_circular_convolution_is_orthogonal():
    """‖conv x‖ = ‖x‖ and ‖Jᵀg‖ = ‖g‖ for c_in = c_out, circular padding, stride 1."""
    layer = LipschitzConv(6, 6, 3, padding="circular", constraint="bcop", use_bias=False, rngs=nnx.Rngs(1),
                          bjorck_iters=25)
    x = jax.random.normal(jax.random.key(0), (3, 7, 7, 6))
    y, vjp = jax.vjp(layer, x)
    np.testing.assert_allclose(jnp.linalg.norm(y.reshape(3, -1), axis=1), jnp.linalg.norm(x.reshape(3, -1), axis=1),
                               rtol=1e-4)
    g = jax.random.normal(jax.random.key(1), y.shape)
    (back,) = vjp(g)
    np.testing.assert_allclose(jnp.linalg.norm(back.reshape(3, -1), axis=1), jnp.linalg.norm(g.reshape(3, -1), axis=1),
                               rtol=1e-4)
    kernel = layer.export_kernel()  # float64, its factors orthonormal to float32 precision (1e-7)
    assert abs(convolution.certified_conv_norm(kernel, (7, 7), "circular") - 1.0) < 3e-7


def conv_config(conv_constraint="bcop", activation="group_sort", padding="zeros", **overrides):
    cfg = dict(kind="conv", conv_channels=[4, 6], downsample=[True, False], kernel_size=3, padding=padding,
               conv_constraint=conv_constraint, widths=[8], activation=activation, group_size=2,
               constraint="bjorck" if conv_constraint != "none" else "none", lipschitz_constant=2.0, norm="l2",
               bjorck_iters=20)
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


def randomized_conv_net(conv_constraint, activation, padding="zeros", seed=0, scale=2.0):
    """A small conv net whose raw parameters are large and random: the constraints must work."""
    group = 2 if activation not in ("relu", "abs") else None
    model = models.build_model(conv_config(conv_constraint, activation, padding, group_size=group), 8 * 8 * 2, 3,
                               seed, input_shape=(8, 8, 2))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed + 7)  # numpy: no compilation per parameter shape
    noisy = [np.asarray(leaf) + scale * rng.normal(size=leaf.shape).astype(np.float32) for leaf in leaves]
    nnx.update(model, jax.tree.unflatten(treedef, noisy))
    return model


@pytest.mark.parametrize("activation", acts.ACTIVATIONS)
def test_conv_net_certificate_holds_and_search_finds_no_violation(activation):
    """Every conv constraint × activation: the export's numpy and JAX functions agree, the
    certificate is ≤ K for constrained convs, and gradient ascent (on ‖J‖ and on pair
    ratios) finds no violation. (The constraints share one compiled search per activation.)"""
    x = np.asarray(jax.random.normal(jax.random.key(3), (6, 8 * 8 * 2)))
    x0 = jax.random.normal(jax.random.key(1), (4, 8 * 8 * 2))
    for conv_constraint in conv_constraints.CONV_CONSTRAINTS:
        exported = export.export_model(randomized_conv_net(conv_constraint, activation))
        numpy_out = export.numpy_forward(exported, x)
        jax_out = export.export_apply(exported)(export.export_params(exported), jnp.asarray(x))
        np.testing.assert_allclose(numpy_out, jax_out, rtol=1e-4, atol=1e-4 * np.abs(numpy_out).max())
        upper = certify.lipschitz_upper_bound(exported)
        assert upper <= 2.0 or conv_constraint == "none"
        lower = certify.export_lower_bound(exported, x0, jax.random.key(2), steps=15)
        assert lower <= upper * (1 + 1e-5), (conv_constraint, lower, upper)


@pytest.mark.parametrize("conv_constraint", conv_constraints.CONV_CONSTRAINTS)
def test_conv_export_matches_the_model_and_bounds_its_layers(conv_constraint):
    """The export computes the trained model's function; each conv record's bound is ≥ a
    power iteration on the layer's real input shape, and ≤ 1 for constrained convs; the
    training-time function of the AOL net has no violation either."""
    model = randomized_conv_net(conv_constraint, "group_sort")
    exported = export.export_model(model)
    x = np.asarray(jax.random.normal(jax.random.key(3), (6, 8 * 8 * 2)))
    numpy_out = export.numpy_forward(exported, x)
    np.testing.assert_allclose(numpy_out, model(jnp.asarray(x)), rtol=3e-4, atol=3e-4 * np.abs(numpy_out).max())
    np.testing.assert_allclose(export.numpy_forward(exported, x.reshape(6, 8, 8, 2)), numpy_out)  # NHWC input too
    records = [r for r in exported.layers if r["type"] == "conv"]
    for record, shape in zip(records, model.spec.feature_shapes()):
        assert record["input_size"] == list(shape[:2])
        estimate = convolution.conv_operator_norm_estimate(exported.arrays[record["kernel"]], shape,
                                                           record["strides"], record["padding"], iters=60)
        assert estimate <= record["bound"] * (1 + 1e-5)
        if conv_constraint != "none":
            assert record["bound"] <= 1.0
    # The training-time function: searched for AOL; BCOP's is checked more directly by
    # test_bcop_circular_convolution_is_orthogonal (and searching through its unrolled
    # Björck factors costs ~25 s of compilation).
    if conv_constraint == "aol":
        upper = certify.lipschitz_upper_bound(exported)
        x0 = jax.random.normal(jax.random.key(1), (4, 8 * 8 * 2))
        trained = certify.lipschitz_lower_bound(model, x0, 2, 2, jax.random.key(2), steps=10)
        assert trained <= upper * (1 + 1e-4), (trained, upper)


def test_search_finds_violations_of_unconstrained_conv_nets():
    model = randomized_conv_net("none", "group_sort", scale=3.0)
    exported = export.export_model(model)
    lower = certify.export_lower_bound(exported, jax.random.normal(jax.random.key(1), (4, 128)), jax.random.key(2),
                                       steps=15)
    assert lower > 10.0


@pytest.mark.parametrize("padding", convolution.PADDINGS)
def test_export_is_rebuilt_by_a_numpy_only_reader(padding, tmp_path):
    """The typed records of DESIGN.md, read back with numpy alone (no lipsort)."""
    model = randomized_conv_net("aol", "max_min", padding=padding)
    exported = export.export_model(model)
    export.save_export(exported, str(tmp_path))
    loaded = export.load_export(str(tmp_path))
    assert [r["type"] for r in loaded.layers] == ["conv", "activation", "space_to_depth", "conv", "activation",
                                                  "flatten", "dense", "activation", "dense"]
    arrays = dict(np.load(tmp_path / "export.npz"))
    x = np.asarray(jax.random.normal(jax.random.key(0), (5, 8, 8, 2)), np.float64)

    def reader(h):
        for r in loaded.layers:
            if r["type"] == "conv":
                k = arrays[r["kernel"]].astype(np.float64)
                kh, kw = k.shape[:2]
                if r["padding"] == "circular":
                    pads = [((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)]
                    hp = np.pad(h, [(0, 0), *pads, (0, 0)], mode="wrap")
                else:  # SAME at stride 1
                    hp = np.pad(h, [(0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)])
                out = np.zeros(h.shape[:3] + (k.shape[3],))
                for u in range(kh):
                    for v in range(kw):
                        out += hp[:, u:u + h.shape[1], v:v + h.shape[2]] @ k[u, v]
                h = out + arrays[r["bias"]]
            elif r["type"] == "activation":  # MaxMin on channel pairs
                pairs = h.reshape(h.shape[:-1] + (-1, 2))
                h = np.stack([pairs.min(-1), pairs.max(-1)], -1).reshape(h.shape)
            elif r["type"] == "space_to_depth":
                b = r["block"]
                n, hh, ww, c = h.shape
                h = h.reshape(n, hh // b, b, ww // b, b, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hh // b, ww // b, -1)
            elif r["type"] == "flatten":
                h = h.reshape(len(h), -1)
            else:
                h = h @ arrays[r["kernel"]] + arrays[r["bias"]]
        return h

    np.testing.assert_allclose(reader(x), export.numpy_forward(loaded, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (dict(conv_constraint="orthogonal"), "Unknown conv constraint 'orthogonal'"),
    (dict(padding="reflect"), "Unknown padding 'reflect'"),
    (dict(downsample=[True]), "one entry per conv layer"),
    (dict(conv_channels=[5, 6]), "group_size=2 does not divide"),
    (dict(downsample=[True] * 4, conv_channels=[4] * 4), "even height and width"),
    (dict(conv_channels=[]), "conv_channels"),
])
def test_conv_config_errors_are_clear(overrides, message):
    with pytest.raises(ValueError, match=message):
        models.spec_from_config(conv_config(**overrides), 128, 3, (8, 8, 2))


def test_conv_model_needs_images():
    with pytest.raises(ValueError, match="needs image data"):
        models.spec_from_config(conv_config(), 2, 2, None)


def test_cifar10_conv_config_runs_on_synthetic_batches(tmp_path):
    """configs/robust_cifar10_conv_l2.py end to end (one step) on synthetic python batches."""
    from lipsort import data, train
    from lipsort.config_loader import load_config

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    data.write_cifar_batches(str(folder), rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
                             rng.integers(0, 10, 40), rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
                             rng.integers(0, 10, 12))
    config = load_config("configs/robust_cifar10_conv_l2.py:quick")
    config.data.update(source="cifar_batches", data_dir=str(tmp_path), num_train=40, num_test=12)
    config.train.update(num_steps=1, log_every=1, checkpoint_every=1, batch_size=8)
    config.eval.update(attack_steps=1, epsilons=(36 / 255,))
    config.certify.search_steps = 0  # the search on conv exports: test_conv_net_certificate_holds...
    results = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["data_source"].startswith("cifar_batches")
    assert f"{36 / 255}" in results["certified_accuracy"]
    assert results["lipschitz_upper_bound"] <= 1.0
    exported = export.load_export(str(tmp_path / "run"))
    assert exported.meta["input_shape"] == [32, 32, 3]
    assert [r["input_size"] for r in exported.layers if r["type"] == "conv"] == [[32, 32], [16, 16]]


def test_wde_conv_critic_config_validates():
    """configs/wde_*.py:conv: the Wasserstein critic as a conv net on the images' shape."""
    from lipsort import train
    from lipsort.config_loader import load_config

    config = load_config("configs/wde_mnist.py:quick,conv")
    config.data.source = "bundled"
    _, spec = train.validate_config(config)
    assert spec.input_shape == (28, 28, 1) and spec.conv_constraint == "bcop"
