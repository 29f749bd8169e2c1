"""fit_lda against scikit-learn's LinearDiscriminantAnalysis."""

import numpy as np
import pytest

import pixelmix as pm


@pytest.fixture
def labelled(rng):
    labels = rng.integers(0, 4, size=(25, 30))
    x = rng.normal(size=(25, 30, 5)) @ rng.normal(size=(5, 5)) + 2 * rng.normal(size=(4, 5))[labels]
    return x, labels


@pytest.mark.parametrize("axis", [0, -1])
def test_matches_sklearn(labelled, axis):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    x, labels = labelled
    sel = labels > 0
    ref = LinearDiscriminantAnalysis(solver="svd").fit(x[sel], labels[sel])
    m = pm.fit_lda(np.moveaxis(x, -1, axis).copy(), labels, channel_axis=axis)
    assert m.output_names == ("LD1", "LD2") and m.metadata["classes"] == [1, 2, 3]
    ours = np.moveaxis(m(np.moveaxis(x, -1, axis).copy(), channel_axis=axis), axis, -1)[sel]
    # scikit-learn pools the within-class variance over n, we over n - n_classes.
    n, g = sel.sum(), 3
    theirs = ref.transform(x[sel]) / np.sqrt(n / (n - g))
    signs = np.sign((ours * theirs).sum(0))
    np.testing.assert_allclose(ours, theirs * signs, atol=1e-8)
    np.testing.assert_allclose(m.metadata["explained_variance_ratio"], ref.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(m.metadata["priors"], ref.priors_, rtol=1e-12)


def test_n_components_and_lists(labelled):
    x, labels = labelled
    one = pm.fit_lda(x, labels, 1)
    assert one.n_outputs == 1
    halves = pm.fit_lda([x[:10], x[10:]], [labels[:10], labels[10:]], 1)
    np.testing.assert_allclose(halves.weights, one.weights, atol=1e-10)


def test_errors(labelled):
    x, labels = labelled
    with pytest.raises(ValueError, match="labels has shape"):
        pm.fit_lda(x, labels[:, :-1])
    with pytest.raises(ValueError, match="at least two classes"):
        pm.fit_lda(x, (labels > 0).astype(int))
    with pytest.raises(ValueError, match="at least two classes"):
        pm.fit_lda(x, np.zeros_like(labels))
    with pytest.raises(ValueError, match="between 1 and 2"):
        pm.fit_lda(x, labels, 3)
    with pytest.raises(TypeError, match="integer image"):
        pm.fit_lda(x, labels.astype(np.float32))
    flat = x.copy()
    flat[..., 4] = flat[..., 3]  # a duplicated channel: singular within-class scatter
    with pytest.raises(ValueError, match="singular"):
        pm.fit_lda(flat, labels)
