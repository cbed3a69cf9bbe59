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
