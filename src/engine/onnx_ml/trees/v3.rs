//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (ai.onnx.ml 1 and 3): nodes listed
//! as parallel `nodes_*` attributes keyed by (tree id, node id), leaf weights as parallel
//! `class_*` / `target_*` attributes.
//!
//! Read the way onnxruntime reads them: a tree is a run of consecutive nodes with the same
//! tree id and its root is the run's first node; a leaf's weights are all the entries naming
//! it, in attribute order; weights naming a branch are ignored.

use super::attributes::{Attributes, Reals};
use super::classification::{Classes, Labels};
use super::ensemble::{Aggregate, Branch, Child, Comparison, Ensemble, Leaf, PostTransform};
use super::regression;
use std::collections::{HashMap, HashSet};
use tract_onnx::prelude::*;

/// Features are packed in 24 bits in the evaluation layout.
pub const MAX_FEATURE: usize = (1 << 24) - 1;

pub fn regressor(attrs: &Attributes) -> TractResult<Ensemble> {
    let n_targets = attrs
        .int("n_targets")?
        .ok_or_else(|| attrs.refuse_attr("n_targets", "is required and missing"))?;
    if n_targets <= 0 {
        return Err(attrs.refuse_attr("n_targets", format!("is {n_targets}; it must be positive")));
    }
    let aggregate = match attrs.string("aggregate_function")?.as_deref() {
        None | Some("SUM") => Aggregate::Sum,
        Some("AVERAGE") => Aggregate::Average,
        Some("MIN") => Aggregate::Min,
        Some("MAX") => Aggregate::Max,
        Some(other) => {
            return Err(attrs.refuse_attr("aggregate_function", format!("unknown value '{other}'")));
        }
    };
    let ensemble = read(attrs, "target", n_targets as usize, aggregate)?;
    regression::check(&ensemble).map_err(|why| attrs.refuse_attr("post_transform", why))?;
    let n = ensemble.n_outputs;
    if !(ensemble.base_values.is_empty() || ensemble.base_values.len() == n) {
        return Err(attrs.refuse_attr(
            "base_values",
            format!(
                "has {} values for {n} targets; it must have 0 or {n}",
                ensemble.base_values.len()
            ),
        ));
    }
    Ok(ensemble)
}

pub fn classifier(attrs: &Attributes) -> TractResult<(Ensemble, Classes)> {
    let labels = match (
        attrs.ints("classlabels_int64s")?,
        attrs.strings("classlabels_strings")?,
    ) {
        (Some(ints), None) => Labels::Int64(ints.to_vec()),
        (None, Some(strings)) => Labels::Strings(strings),
        (Some(_), Some(_)) => {
            return Err(attrs.refuse(
                "both classlabels_int64s and classlabels_strings are given; only one may be",
            ));
        }
        (None, None) => {
            return Err(attrs.refuse("neither classlabels_int64s nor classlabels_strings is given"));
        }
    };
    let n = labels.len();
    // onnxruntime's classifier sums the trees whatever `aggregate_function` says.
    let ensemble = read(attrs, "class", n, Aggregate::Sum)?;
    let base = ensemble.base_values.len();
    if !(base == 0 || base == n || (n == 2 && base == 1)) {
        let allowed = if n == 2 {
            "0, 1 or 2".to_owned()
        } else {
            format!("0 or {n}")
        };
        return Err(attrs.refuse_attr(
            "base_values",
            format!("has {base} values for {n} classes; it must have {allowed}"),
        ));
    }
    let weights = attrs.reals("class_weights")?.unwrap_or_default().values;
    let ids = attrs.required_ints("class_ids")?;
    let classes = Classes::new(labels, ids, &weights);
    classes.check(&ensemble).map_err(|why| attrs.refuse(why))?;
    Ok((ensemble, classes))
}

fn mode(attrs: &Attributes, text: &str) -> TractResult<Option<Comparison>> {
    Ok(Some(match text {
        "BRANCH_LEQ" => Comparison::Leq,
        "BRANCH_LT" => Comparison::Lt,
        "BRANCH_GTE" => Comparison::Gte,
        "BRANCH_GT" => Comparison::Gt,
        "BRANCH_EQ" => Comparison::Eq,
        "BRANCH_NEQ" => Comparison::Neq,
        "LEAF" => return Ok(None),
        other => return Err(attrs.refuse_attr("nodes_modes", format!("unknown mode '{other}'"))),
    }))
}

pub fn post_transform(attrs: &Attributes) -> TractResult<PostTransform> {
    Ok(match attrs.string("post_transform")?.as_deref() {
        None | Some("NONE") => PostTransform::None,
        Some("SOFTMAX") => PostTransform::Softmax,
        Some("LOGISTIC") => PostTransform::Logistic,
        Some("SOFTMAX_ZERO") => PostTransform::SoftmaxZero,
        Some("PROBIT") => PostTransform::Probit,
        Some(other) => {
            return Err(attrs.refuse_attr("post_transform", format!("unknown value '{other}'")));
        }
    })
}

/// Checks that attribute `name` has one value per node.
fn same_length<T>(attrs: &Attributes, name: &str, values: &[T], n: usize) -> TractResult<()> {
    if values.len() != n {
        return Err(attrs.refuse_attr(name, format!("has {} values for {n} entries", values.len())));
    }
    Ok(())
}

/// Reads the trees and their weights; `prefix` is "class" or "target".
fn read(
    attrs: &Attributes,
    prefix: &str,
    n_outputs: usize,
    aggregate: Aggregate,
) -> TractResult<Ensemble> {
    let tree_ids = attrs.required_ints("nodes_treeids")?;
    let n = tree_ids.len();
    if n == 0 {
        return Err(attrs.refuse_attr("nodes_treeids", "is empty: the ensemble has no tree"));
    }
    let node_ids = attrs.required_ints("nodes_nodeids")?;
    let features = attrs.required_ints("nodes_featureids")?;
    let true_ids = attrs.required_ints("nodes_truenodeids")?;
    let false_ids = attrs.required_ints("nodes_falsenodeids")?;
    let modes = attrs
        .strings("nodes_modes")?
        .ok_or_else(|| attrs.refuse_attr("nodes_modes", "is required and missing"))?;
    let values = attrs
        .reals("nodes_values")?
        .ok_or_else(|| attrs.refuse_attr("nodes_values", "is required and missing"))?;
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.values.len()),
    ] {
        if len != n {
            return Err(attrs.refuse_attr(name, format!("has {len} values for {n} nodes")));
        }
    }
    // Missing entries (a shorter list) do not track missing values, as in onnxruntime.
    let tracks = attrs
        .ints("nodes_missing_value_tracks_true")?
        .unwrap_or_default();
    let comparisons: Vec<Option<Comparison>> = modes
        .iter()
        .map(|m| mode(attrs, m))
        .collect::<TractResult<_>>()?;

    let mut index: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        if index.insert((tree_ids[i], node_ids[i]), i).is_some() {
            return Err(attrs.refuse(format!(
                "node {} appears twice in tree {}",
                node_ids[i], tree_ids[i]
            )));
        }
    }

    // Each node's place in the branch or leaf list.
    let mut place = Vec::with_capacity(n);
    let (mut n_branches, mut n_leaves) = (0, 0);
    for comparison in &comparisons {
        place.push(match comparison {
            Some(_) => {
                n_branches += 1;
                Child::Branch(n_branches - 1)
            }
            None => {
                n_leaves += 1;
                Child::Leaf(n_leaves - 1)
            }
        });
    }

    let child = |i: usize, side: &str, id: i64| -> TractResult<usize> {
        index.get(&(tree_ids[i], id)).copied().ok_or_else(|| {
            attrs.refuse(format!(
                "node {} of tree {}: its {side} child {id} is not a node of the tree",
                node_ids[i], tree_ids[i]
            ))
        })
    };
    let mut branches = Vec::with_capacity(n_branches);
    let mut children = vec![None; n];
    for i in 0..n {
        let Some(comparison) = comparisons[i] else {
            continue;
        };
        let feature = usize::try_from(features[i])
            .ok()
            .filter(|&f| f <= MAX_FEATURE)
            .ok_or_else(|| {
                attrs.refuse_attr(
                    "nodes_featureids",
                    format!(
                        "node {} of tree {} reads feature {}",
                        node_ids[i], tree_ids[i], features[i]
                    ),
                )
            })?;
        let (t, f) = (
            child(i, "true", true_ids[i])?,
            child(i, "false", false_ids[i])?,
        );
        children[i] = Some((t, f));
        branches.push(Branch {
            feature,
            comparison,
            threshold: values.values[i],
            nan_goes_true: tracks.get(i) == Some(&1),
            if_true: place[t],
            if_false: place[f],
        });
    }

    let roots = tree_roots(attrs, tree_ids, node_ids, &children)?;
    let roots = roots.into_iter().map(|i| place[i]).collect();

    let leaves = leaf_weights(attrs, prefix, n_outputs, &index, &place, &values)?;
    let base_values = attrs.reals("base_values")?.unwrap_or_default();
    let weights_double = attrs
        .reals(&format!("{prefix}_weights"))?
        .is_some_and(|w| w.double);
    let ensemble = Ensemble {
        branches,
        leaves,
        roots,
        n_outputs,
        aggregate,
        post_transform: post_transform(attrs)?,
        double_attributes: values.double || base_values.double || weights_double,
        base_values: base_values.values,
    };
    ensemble.check_acyclic().map_err(|why| attrs.refuse(why))?;
    Ok(ensemble)
}

/// The first node of each run of equal tree ids, after checking that every node of the run
/// can be reached from it (onnxruntime takes that first node as the root, whatever its id).
fn tree_roots(
    attrs: &Attributes,
    tree_ids: &[i64],
    node_ids: &[i64],
    children: &[Option<(usize, usize)>],
) -> TractResult<Vec<usize>> {
    let n = tree_ids.len();
    let mut roots = vec![];
    let mut seen_trees = HashSet::new();
    let mut reached = vec![false; n];
    let mut start = 0;
    while start < n {
        let tree = tree_ids[start];
        let end = (start..n).find(|&i| tree_ids[i] != tree).unwrap_or(n);
        if !seen_trees.insert(tree) {
            return Err(attrs.refuse_attr(
                "nodes_treeids",
                format!("the nodes of tree {tree} are not listed together; onnxruntime would read them as several trees"),
            ));
        }
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut reached[i], true) {
                continue;
            }
            if let Some((t, f)) = children[i] {
                stack.extend([t, f]);
            }
        }
        if let Some(lost) = (start..end).find(|&i| !reached[i]) {
            return Err(attrs.refuse(format!(
                "node {} of tree {tree} cannot be reached from the tree's first node ({}), which onnxruntime takes as its root",
                node_ids[lost], node_ids[start]
            )));
        }
        roots.push(start);
        start = end;
    }
    Ok(roots)
}

/// Each leaf's weights, from the `{prefix}_*` attributes.
fn leaf_weights(
    attrs: &Attributes,
    prefix: &str,
    n_outputs: usize,
    index: &HashMap<(i64, i64), usize>,
    place: &[Child],
    values: &Reals,
) -> TractResult<Vec<Leaf>> {
    let name = |suffix: &str| format!("{prefix}_{suffix}");
    let ids = attrs.required_ints(&name("ids"))?;
    let node_ids = attrs.required_ints(&name("nodeids"))?;
    let tree_ids = attrs.required_ints(&name("treeids"))?;
    let weights = attrs
        .reals(&name("weights"))?
        .ok_or_else(|| attrs.refuse_attr(&name("weights"), "is required and missing"))?;
    same_length(attrs, &name("nodeids"), node_ids, ids.len())?;
    same_length(attrs, &name("treeids"), tree_ids, ids.len())?;
    same_length(attrs, &name("weights"), &weights.values, ids.len())?;

    let mut leaves = vec![];
    for (node, child) in place.iter().enumerate() {
        if let Child::Leaf(_) = child {
            leaves.push(Leaf {
                weights: vec![],
                single_output_value: values.values[node],
            });
        }
    }
    for (j, &id) in ids.iter().enumerate() {
        let output = usize::try_from(id)
            .ok()
            .filter(|&o| o < n_outputs)
            .ok_or_else(|| {
                attrs.refuse_attr(&name("ids"), format!("{id} is not in [0, {n_outputs})"))
            })?;
        let node = index.get(&(tree_ids[j], node_ids[j])).ok_or_else(|| {
            attrs.refuse_attr(
                &name("nodeids"),
                format!(
                    "a weight is for node {} of tree {}, which does not exist",
                    node_ids[j], tree_ids[j]
                ),
            )
        })?;
        // Weights on a branch are ignored, as onnxruntime does (old converters wrote some).
        if let Child::Leaf(leaf) = place[*node] {
            let leaf = &mut leaves[leaf];
            if leaf.weights.is_empty() {
                leaf.single_output_value = weights.values[j];
            }
            leaf.weights.push((output, weights.values[j]));
        }
    }
    Ok(leaves)
}

#[cfg(test)]
mod tests {
    use super::super::node_builder::NodeBuilder;
    use super::*;

    /// x2 < 0.5 ? node 1 (weights 3 and 4) : node 2 (no weight, value 7).
    fn stump() -> NodeBuilder {
        NodeBuilder::new("TreeEnsembleRegressor")
            .int("n_targets", 1)
            .ints("nodes_treeids", &[0, 0, 0])
            .ints("nodes_nodeids", &[0, 1, 2])
            .ints("nodes_featureids", &[2, 0, 0])
            .strings("nodes_modes", &["BRANCH_LT", "LEAF", "LEAF"])
            .floats("nodes_values", &[0.5, 0.0, 7.0])
            .ints("nodes_truenodeids", &[1, 0, 0])
            .ints("nodes_falsenodeids", &[2, 0, 0])
            .ints("target_treeids", &[0, 0])
            .ints("target_nodeids", &[1, 1])
            .ints("target_ids", &[0, 0])
            .floats("target_weights", &[3.0, 4.0])
    }

    #[test]
    fn a_stump_reads_as_onnxruntime_reads_it() {
        let e = stump().read(regressor).unwrap();
        assert_eq!(
            e.branches,
            [Branch {
                feature: 2,
                comparison: Comparison::Lt,
                threshold: 0.5,
                nan_goes_true: false,
                if_true: Child::Leaf(0),
                if_false: Child::Leaf(1),
            }]
        );
        assert_eq!(e.roots, [Child::Branch(0)]);
        assert_eq!(e.leaves[0].weights, [(0, 3.0), (0, 4.0)]);
        // One target: the first weight, or the leaf's own value when it has none.
        assert_eq!(e.leaves[0].single_output_value, 3.0);
        assert_eq!(e.leaves[1].single_output_value, 7.0);
        assert!(!e.double_attributes);
    }

    #[test]
    fn weights_on_a_branch_are_ignored_and_tracks_may_be_short() {
        let node = stump()
            .ints("target_treeids", &[0, 0, 0])
            .ints("target_nodeids", &[1, 1, 0])
            .ints("target_ids", &[0, 0, 0])
            .floats("target_weights", &[3.0, 4.0, 100.0])
            .ints("nodes_missing_value_tracks_true", &[1]);
        let e = node.read(regressor).unwrap();
        assert_eq!(e.leaves[0].weights, [(0, 3.0), (0, 4.0)]);
        assert!(e.branches[0].nan_goes_true);
    }

    #[test]
    fn double_tensors_make_a_double_ensemble() {
        let node = stump()
            .without("nodes_values")
            .f64s("nodes_values_as_tensor", &[0.1, 0.0, 0.0])
            .without("target_weights")
            .f32s("target_weights_as_tensor", &[3.0, 4.0]);
        let e = node.read(regressor).unwrap();
        assert_eq!(e.branches[0].threshold, 0.1);
        assert!(e.double_attributes);
        let floats_only = stump()
            .without("nodes_values")
            .f32s("nodes_values_as_tensor", &[0.1, 0.0, 0.0]);
        let e = floats_only.read(regressor).unwrap();
        assert_eq!(e.branches[0].threshold, 0.1f32 as f64);
        assert!(!e.double_attributes);
    }

    #[test]
    fn malformed_attributes_are_refused_naming_node_and_attribute() {
        let cases: Vec<(NodeBuilder, &[&str])> = vec![
            (stump().without("n_targets"), &["'n_targets'", "missing"]),
            (
                stump().ints("nodes_values", &[0, 0, 0]),
                &["'nodes_values'", "expected FLOATS, found INTS"],
            ),
            (
                stump().f32s("nodes_values_as_tensor", &[0.0; 3]),
                &["'nodes_values' and 'nodes_values_as_tensor'"],
            ),
            (
                stump()
                    .u8s("nodes_values_as_tensor", &[0; 3])
                    .without("nodes_values"),
                &["float or double tensor"],
            ),
            (
                stump().strings("nodes_modes", &["BRANCH_XX", "LEAF", "LEAF"]),
                &["'nodes_modes'", "BRANCH_XX"],
            ),
            (
                stump().ints("nodes_nodeids", &[0, 1, 1]),
                &["node 1 appears twice in tree 0"],
            ),
            (
                stump().ints("nodes_truenodeids", &[5, 0, 0]),
                &["its true child 5"],
            ),
            (
                stump().ints("nodes_featureids", &[-1, 0, 0]),
                &["'nodes_featureids'", "feature -1"],
            ),
            (
                stump().ints("nodes_featureids", &[0, 0]),
                &["'nodes_featureids'", "2 values for 3 nodes"],
            ),
            (stump().ints("nodes_treeids", &[]), &["no tree"]),
            (
                stump().ints("target_ids", &[0, 1]),
                &["'target_ids'", "1 is not in [0, 1)"],
            ),
            (
                stump().ints("target_nodeids", &[1, 9]),
                &["node 9 of tree 0, which does not exist"],
            ),
            (
                stump().floats("target_weights", &[1.0]),
                &["'target_weights'", "1 values for 2 entries"],
            ),
            (
                stump().string("aggregate_function", "MEDIAN"),
                &["'aggregate_function'", "MEDIAN"],
            ),
            (
                stump().string("post_transform", "LOGISTIC"),
                &["'post_transform'", "single target"],
            ),
            (
                stump().floats("base_values", &[1.0, 2.0]),
                &["'base_values'", "0 or 1"],
            ),
            (
                stump().ints("n_targets", &[1]),
                &["'n_targets'", "expected INT"],
            ),
        ];
        for (node, words) in cases {
            let refusal = node.refusal(regressor);
            assert!(
                refusal.starts_with("TreeEnsembleRegressor node 'n'"),
                "{refusal}"
            );
            for word in words {
                assert!(refusal.contains(word), "'{word}' is not in: {refusal}");
            }
        }
    }

    #[test]
    fn trees_are_runs_of_nodes_rooted_at_their_first() {
        // Two trees; the second lists its nodes out of id order, root first.
        let node = stump()
            .ints("nodes_treeids", &[0, 0, 0, 4, 4, 4])
            .ints("nodes_nodeids", &[0, 1, 2, 0, 2, 1])
            .ints("nodes_featureids", &[2, 0, 0, 1, 0, 0])
            .strings(
                "nodes_modes",
                &["BRANCH_LT", "LEAF", "LEAF", "BRANCH_EQ", "LEAF", "LEAF"],
            )
            .floats("nodes_values", &[0.5, 0.0, 7.0, 1.0, 0.0, 0.0])
            .ints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0])
            .ints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0])
            .ints("target_treeids", &[0, 4, 4])
            .ints("target_nodeids", &[1, 1, 2])
            .ints("target_ids", &[0, 0, 0])
            .floats("target_weights", &[3.0, 5.0, 6.0]);
        let e = node.read(regressor).unwrap();
        assert_eq!(e.roots, [Child::Branch(0), Child::Branch(1)]);
        assert_eq!(e.branches[1].if_true, Child::Leaf(3));
        assert_eq!(e.leaves[3].weights, [(0, 5.0)]);

        // The same nodes, tree 0's last listed after tree 4's first.
        let split = node
            .clone()
            .ints("nodes_treeids", &[0, 0, 4, 0, 4, 4])
            .ints("nodes_nodeids", &[0, 1, 0, 2, 2, 1])
            .ints("nodes_featureids", &[2, 0, 1, 0, 0, 0])
            .strings(
                "nodes_modes",
                &["BRANCH_LT", "LEAF", "BRANCH_EQ", "LEAF", "LEAF", "LEAF"],
            )
            .floats("nodes_values", &[0.5, 0.0, 1.0, 7.0, 0.0, 0.0]);
        assert!(
            split
                .refusal(regressor)
                .contains("the nodes of tree 0 are not listed together")
        );
        let leaf_first = stump()
            .ints("nodes_nodeids", &[1, 0, 2])
            .strings("nodes_modes", &["LEAF", "BRANCH_LT", "LEAF"])
            .ints("nodes_truenodeids", &[0, 1, 0])
            .ints("nodes_falsenodeids", &[0, 2, 0]);
        assert!(
            leaf_first
                .refusal(regressor)
                .contains("cannot be reached from the tree's first node (1)")
        );
        let cycle = stump()
            .strings("nodes_modes", &["BRANCH_LT", "BRANCH_LT", "LEAF"])
            .ints("nodes_truenodeids", &[1, 0, 0])
            .ints("nodes_falsenodeids", &[2, 2, 0]);
        assert!(cycle.refusal(regressor).contains("cycle"));
    }

    #[test]
    fn classifier_labels_and_base_values() {
        let classifier_stump = || {
            let mut node = NodeBuilder::new("TreeEnsembleClassifier");
            for (name, values) in [("treeids", [0, 0]), ("nodeids", [1, 2]), ("ids", [0, 1])] {
                node = node.ints(&format!("class_{name}"), &values);
            }
            node.ints("nodes_treeids", &[0, 0, 0])
                .ints("nodes_nodeids", &[0, 1, 2])
                .ints("nodes_featureids", &[0, 0, 0])
                .strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"])
                .floats("nodes_values", &[0.0, 0.0, 0.0])
                .ints("nodes_truenodeids", &[1, 0, 0])
                .ints("nodes_falsenodeids", &[2, 0, 0])
                .floats("class_weights", &[0.25, 0.75])
                .strings("classlabels_strings", &["no", "yes"])
        };
        let (e, classes) = classifier_stump().read(classifier).unwrap();
        assert_eq!(
            classes.labels,
            Labels::Strings(vec!["no".into(), "yes".into()])
        );
        assert_eq!(e.aggregate, Aggregate::Sum);
        let cases: Vec<(NodeBuilder, &str)> = vec![
            (
                classifier_stump().ints("classlabels_int64s", &[0, 1]),
                "both classlabels_int64s and classlabels_strings",
            ),
            (
                classifier_stump().without("classlabels_strings"),
                "neither classlabels_int64s nor classlabels_strings",
            ),
            (
                classifier_stump()
                    .strings("classlabels_strings", &["a", "b", "c"])
                    .floats("base_values", &[1.0]),
                "it must have 0 or 3",
            ),
            (
                classifier_stump().floats("base_values", &[1.0, 2.0, 3.0]),
                "it must have 0, 1 or 2",
            ),
            (
                classifier_stump()
                    .without("classlabels_strings")
                    .ints("classlabels_int64s", &[3, 7]),
                "not one of the model's labels [3, 7]",
            ),
            (
                classifier_stump()
                    .strings("classlabels_strings", &["only"])
                    .ints("class_ids", &[0, 0]),
                "1 class label(s)",
            ),
            (classifier_stump().ints("class_ids", &[0, 2]), "'class_ids'"),
        ];
        for (node, words) in cases {
            let refusal = node.refusal(classifier);
            assert!(
                refusal.starts_with("TreeEnsembleClassifier node 'n'"),
                "{refusal}"
            );
            assert!(refusal.contains(words), "'{words}' is not in: {refusal}");
        }
    }
}
