//! `TreeEnsemble` (ai.onnx.ml 5): interior nodes indexed by position, leaves in their own
//! `leaf_*` lists, trees named by `tree_roots`, and set-membership branches
//! (`BRANCH_MEMBER`), which become chains of equality branches.
//!
//! onnxruntime 1.31 takes only integer members (in the 32-bit range) and tests membership
//! two ways: when every member is in [0, 30], by equality; otherwise by truncating the
//! feature to a 32-bit integer first (so 1.5 is a member of {1, 40}, and NaN is one of a
//! set holding `i32::MIN`). A NaN with its missing-value track set goes true either way.

use super::attributes::Attributes;
use super::ensemble::{Aggregate, Branch, Child, Comparison, Ensemble, Leaf, PostTransform};
use super::regression;
use super::v3::MAX_FEATURE;
use tract_onnx::prelude::*;

const BRANCH_MEMBER: u8 = 6;

pub fn tree_ensemble(attrs: &Attributes) -> TractResult<Ensemble> {
    let n_targets = attrs
        .int("n_targets")?
        .ok_or_else(|| attrs.refuse_attr("n_targets", "is required and missing"))?;
    let n_targets = usize::try_from(n_targets)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            attrs.refuse_attr("n_targets", format!("is {n_targets}; it must be positive"))
        })?;
    let aggregate = match attrs.int("aggregate_function")?.unwrap_or(1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => {
            return Err(attrs.refuse_attr("aggregate_function", format!("unknown value {other}")));
        }
    };
    let post_transform = match attrs.int("post_transform")?.unwrap_or(0) {
        0 => PostTransform::None,
        code @ (1 | 2) => {
            return Err(attrs.refuse_attr(
                "post_transform",
                format!(
                    "{code} ({}): onnxruntime 1.31 reads 1 as LOGISTIC and 2 as SOFTMAX, the ONNX specification 1 as SOFTMAX and 2 as LOGISTIC",
                    if code == 1 { "SOFTMAX" } else { "LOGISTIC" }
                ),
            ));
        }
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => return Err(attrs.refuse_attr("post_transform", format!("unknown value {other}"))),
    };

    let features = attrs.required_ints("nodes_featureids")?;
    let n = features.len();
    let splits = attrs
        .tensor_reals("nodes_splits")?
        .ok_or_else(|| attrs.refuse_attr("nodes_splits", "is required and missing"))?;
    let modes = attrs
        .tensor_bytes("nodes_modes")?
        .ok_or_else(|| attrs.refuse_attr("nodes_modes", "is required and missing"))?;
    let true_ids = attrs.required_ints("nodes_truenodeids")?;
    let false_ids = attrs.required_ints("nodes_falsenodeids")?;
    let true_leafs = attrs.required_ints("nodes_trueleafs")?;
    let false_leafs = attrs.required_ints("nodes_falseleafs")?;
    let tracks = attrs.ints("nodes_missing_value_tracks_true")?;
    for (name, len) in [
        ("nodes_splits", splits.values.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", true_ids.len()),
        ("nodes_falsenodeids", false_ids.len()),
        ("nodes_trueleafs", true_leafs.len()),
        ("nodes_falseleafs", false_leafs.len()),
        (
            "nodes_missing_value_tracks_true",
            tracks.map_or(n, <[i64]>::len),
        ),
    ] {
        if len != n {
            return Err(attrs.refuse_attr(name, format!("has {len} values for {n} nodes")));
        }
    }

    let target_ids = attrs.required_ints("leaf_targetids")?;
    let weights = attrs
        .tensor_reals("leaf_weights")?
        .ok_or_else(|| attrs.refuse_attr("leaf_weights", "is required and missing"))?;
    if weights.values.len() != target_ids.len() {
        return Err(attrs.refuse_attr(
            "leaf_weights",
            format!(
                "has {} values for {} leaf_targetids",
                weights.values.len(),
                target_ids.len()
            ),
        ));
    }
    let mut leaves = Vec::with_capacity(target_ids.len());
    for (&target, &weight) in target_ids.iter().zip(&weights.values) {
        let target = usize::try_from(target)
            .ok()
            .filter(|&t| t < n_targets)
            .ok_or_else(|| {
                attrs.refuse_attr(
                    "leaf_targetids",
                    format!("{target} is not in [0, {n_targets})"),
                )
            })?;
        leaves.push(Leaf {
            weights: vec![(target, weight)],
            single_output_value: weight,
        });
    }

    let members = membership_sets(attrs, &modes)?;
    let membership_double = attrs
        .tensor_reals("membership_values")?
        .is_some_and(|m| m.double);

    // Each node becomes one branch, or a chain of them for a set membership; `first[i]` is
    // where node i's chain starts.
    let mut first = Vec::with_capacity(n);
    let mut count = 0;
    for (i, &mode) in modes.iter().enumerate() {
        first.push(count);
        count += if mode == BRANCH_MEMBER {
            members[i].len()
        } else {
            1
        };
    }
    let child = |i: usize, side: &str, id: i64, leaf: i64| -> TractResult<Child> {
        let (kind, limit) = if leaf != 0 {
            ("leaf", leaves.len())
        } else {
            ("node", n)
        };
        let at = usize::try_from(id)
            .ok()
            .filter(|&at| at < limit)
            .ok_or_else(|| {
                attrs.refuse(format!(
                    "node {i}: its {side} branch is {kind} {id}, which does not exist"
                ))
            })?;
        Ok(if leaf != 0 {
            Child::Leaf(at)
        } else {
            Child::Branch(first[at])
        })
    };

    let mut branches = Vec::with_capacity(count);
    for i in 0..n {
        let feature = usize::try_from(features[i])
            .ok()
            .filter(|&f| f <= MAX_FEATURE)
            .ok_or_else(|| {
                attrs.refuse_attr(
                    "nodes_featureids",
                    format!("node {i} reads feature {}", features[i]),
                )
            })?;
        let if_true = child(i, "true", true_ids[i], true_leafs[i])?;
        let if_false = child(i, "false", false_ids[i], false_leafs[i])?;
        let nan_goes_true = tracks.is_some_and(|t| t[i] == 1);
        let comparison = match modes[i] {
            0 => Comparison::Leq,
            1 => Comparison::Lt,
            2 => Comparison::Gte,
            3 => Comparison::Gt,
            4 => Comparison::Eq,
            5 => Comparison::Neq,
            BRANCH_MEMBER => {
                // x == m1 ? true : (x == m2 ? true : ... : false)
                let set = &members[i];
                let comparison = if set.iter().all(|&m| (0.0..=30.0).contains(&m)) {
                    Comparison::Eq
                } else {
                    Comparison::TruncatedEq
                };
                for (k, &member) in set.iter().enumerate() {
                    let next = if k + 1 < set.len() {
                        Child::Branch(branches.len() + 1)
                    } else {
                        if_false
                    };
                    branches.push(Branch {
                        feature,
                        comparison,
                        threshold: member,
                        nan_goes_true,
                        if_true,
                        if_false: next,
                    });
                }
                continue;
            }
            other => {
                return Err(
                    attrs.refuse_attr("nodes_modes", format!("node {i} has unknown mode {other}"))
                );
            }
        };
        branches.push(Branch {
            feature,
            comparison,
            threshold: splits.values[i],
            nan_goes_true,
            if_true,
            if_false,
        });
    }

    let mut roots = vec![];
    for &root in attrs.required_ints("tree_roots")? {
        let i = usize::try_from(root)
            .ok()
            .filter(|&i| i < n)
            .ok_or_else(|| attrs.refuse_attr("tree_roots", format!("{root} is not a node")))?;
        // A one-leaf tree is a node whose two branches are the same leaf.
        let (t, f) = (
            child(i, "true", true_ids[i], true_leafs[i])?,
            child(i, "false", false_ids[i], false_leafs[i])?,
        );
        roots.push(match (t, f) {
            (Child::Leaf(a), Child::Leaf(b)) if a == b => t,
            _ => Child::Branch(first[i]),
        });
    }
    if roots.is_empty() {
        return Err(attrs.refuse_attr("tree_roots", "is empty: the ensemble has no tree"));
    }

    let ensemble = Ensemble {
        branches,
        leaves,
        roots,
        n_outputs: n_targets,
        aggregate,
        post_transform,
        base_values: vec![],
        double_attributes: splits.double || weights.double || membership_double,
    };
    ensemble.check_acyclic().map_err(|why| attrs.refuse(why))?;
    regression::check(&ensemble).map_err(|why| attrs.refuse_attr("post_transform", why))?;
    Ok(ensemble)
}

/// The member set of each `BRANCH_MEMBER` node: `membership_values` lists them in node
/// order, each closed by a NaN.
fn membership_sets(attrs: &Attributes, modes: &[u8]) -> TractResult<Vec<Vec<f64>>> {
    let values = attrs
        .tensor_reals("membership_values")?
        .unwrap_or_default()
        .values;
    let mut sets = values.split(|v| v.is_nan());
    let mut result = Vec::with_capacity(modes.len());
    for (i, &mode) in modes.iter().enumerate() {
        if mode != BRANCH_MEMBER {
            result.push(vec![]);
            continue;
        }
        match sets.next() {
            Some(set) if !set.is_empty() => {
                let integer =
                    |m: f64| m == m.trunc() && (-2_147_483_648.0..=2_147_483_647.0).contains(&m);
                if let Some(bad) = set.iter().find(|&&m| !integer(m)) {
                    return Err(attrs.refuse_attr(
                        "membership_values",
                        format!(
                            "node {i} has member {bad}; onnxruntime takes only 32-bit integers"
                        ),
                    ));
                }
                result.push(set.to_vec())
            }
            _ => {
                return Err(attrs.refuse_attr(
                    "membership_values",
                    format!("node {i} tests set membership but has no member"),
                ));
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::super::node_builder::NodeBuilder;
    use super::*;

    /// node 0: x0 in {1, 3} ? leaf 0 : node 1; node 1: x1 <= 2 ? leaf 1 : leaf 2.
    fn member() -> NodeBuilder {
        NodeBuilder::new("TreeEnsemble")
            .int("n_targets", 2)
            .ints("nodes_featureids", &[0, 1])
            .f32s("nodes_splits", &[0.0, 2.0])
            .u8s("nodes_modes", &[6, 0])
            .ints("nodes_truenodeids", &[0, 1])
            .ints("nodes_falsenodeids", &[1, 2])
            .ints("nodes_trueleafs", &[1, 1])
            .ints("nodes_falseleafs", &[0, 1])
            .ints("tree_roots", &[0])
            .f32s("membership_values", &[1.0, 3.0, f32::NAN])
            .ints("leaf_targetids", &[0, 1, 1])
            .f32s("leaf_weights", &[1.5, -2.0, 0.25])
    }

    #[test]
    fn set_membership_becomes_a_chain_of_equalities() {
        let e = member().read(tree_ensemble).unwrap();
        let chain: Vec<_> = e.branches[..2]
            .iter()
            .map(|b| (b.comparison, b.threshold, b.if_true, b.if_false))
            .collect();
        assert_eq!(
            chain,
            [
                (Comparison::Eq, 1.0, Child::Leaf(0), Child::Branch(1)),
                (Comparison::Eq, 3.0, Child::Leaf(0), Child::Branch(2)),
            ]
        );
        assert_eq!(e.branches[2].if_false, Child::Leaf(2));
        assert_eq!(e.roots, [Child::Branch(0)]);
        // Members outside [0, 30]: onnxruntime truncates the feature to an integer first.
        let wide = member().f32s("membership_values", &[1.0, 40.0, f32::NAN]);
        let e = wide.read(tree_ensemble).unwrap();
        assert_eq!(e.branches[0].comparison, Comparison::TruncatedEq);
        assert_eq!(e.branches[1].comparison, Comparison::TruncatedEq);
        assert_eq!(e.branches[2].comparison, Comparison::Leq);
    }

    #[test]
    fn a_node_whose_branches_are_one_leaf_is_a_one_leaf_tree() {
        let node = member()
            .ints("tree_roots", &[0, 1])
            .ints("nodes_truenodeids", &[0, 2]);
        assert_eq!(
            node.read(tree_ensemble).unwrap().roots,
            [Child::Branch(0), Child::Leaf(2)]
        );
    }

    #[test]
    fn malformed_or_disputed_attributes_are_refused() {
        let cases: Vec<(NodeBuilder, &[&str])> = vec![
            (
                member().f32s("membership_values", &[1.0, 2.5, f32::NAN]),
                &["'membership_values'", "2.5"],
            ),
            (
                member().f32s("membership_values", &[2_147_483_648.0, f32::NAN]),
                &["'membership_values'", "32-bit integers"],
            ),
            (
                member().without("membership_values"),
                &["'membership_values'", "node 0", "no member"],
            ),
            (
                member().int("post_transform", 1),
                &["'post_transform'", "1 (SOFTMAX)"],
            ),
            (
                member().int("post_transform", 2),
                &["'post_transform'", "2 (LOGISTIC)"],
            ),
            (
                member().int("post_transform", 7),
                &["'post_transform'", "unknown value 7"],
            ),
            (
                member().int("aggregate_function", 4),
                &["'aggregate_function'"],
            ),
            (
                member().ints("leaf_targetids", &[0, 2, 1]),
                &["'leaf_targetids'", "2 is not in [0, 2)"],
            ),
            (
                member().ints("nodes_falsenodeids", &[1, 3]),
                &["node 1", "leaf 3, which does not exist"],
            ),
            (
                member().ints("nodes_trueleafs", &[1]),
                &["'nodes_trueleafs'", "1 values for 2 nodes"],
            ),
            (
                member().u8s("nodes_modes", &[6, 9]),
                &["'nodes_modes'", "unknown mode 9"],
            ),
            (
                member().ints("tree_roots", &[2]),
                &["'tree_roots'", "2 is not a node"],
            ),
            (
                member()
                    .ints("nodes_falseleafs", &[0, 0])
                    .ints("nodes_falsenodeids", &[1, 0]),
                &["cycle"],
            ),
            (member().without("n_targets"), &["'n_targets'"]),
        ];
        for (node, words) in cases {
            let refusal = node.refusal(tree_ensemble);
            assert!(refusal.starts_with("TreeEnsemble node 'n'"), "{refusal}");
            for word in words {
                assert!(refusal.contains(word), "'{word}' is not in: {refusal}");
            }
        }
    }
}
