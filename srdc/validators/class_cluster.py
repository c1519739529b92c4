"""Class-cluster agreement: K-means of the target features against the predictions."""

from __future__ import annotations

import math

from srdc.validators.base import ValidationInput

CLUSTER_ITERATIONS = 10  # Lloyd iterations of the K-means


def class_cluster_ami(view: ValidationInput) -> float:
    """Class-cluster agreement (pytorch-adapt's ``ClassClusterValidator`` with ``centroid_init="label_centers"``, as
    benchmarked by Musgrave et al. 2022): K-means of the target pooled features, started from the centres of the
    predicted classes (no random state), and the adjusted mutual information between its clusters and the
    predictions; higher is better (the classifier's partition is the features' cluster structure). Cost: 10 Lloyd
    iterations over the N_t x d features and scikit-learn's AMI."""
    import torch
    from sklearn.metrics import adjusted_mutual_info_score

    from srdc.clustering import class_means, kmeans

    features = view.target.spaces["pooled"].float()
    predictions = view.target_probs.argmax(dim=1)
    if not bool(torch.isfinite(features).all()):  # a diverged model: NaN, as the other validators say
        return math.nan
    classes, labels = torch.unique(predictions, return_inverse=True)  # the predicted classes only
    clusters, _ = kmeans(features, class_means(features, labels, len(classes))[0], iterations=CLUSTER_ITERATIONS)
    return float(adjusted_mutual_info_score(labels.cpu().numpy(), clusters.cpu().numpy()))
