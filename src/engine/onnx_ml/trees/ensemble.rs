//! An ensemble as the attributes describe it, whichever operator they came from: trees of
//! branches and leaves, validated, with thresholds and weights kept in double (exact for
//! both float and double attributes). `forest` lays it out for evaluation once the input
//! type is known.

/// How a branch compares the row's feature `x` with its threshold `t`; `x op t` true takes
/// the true branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Comparison {
    Leq = 0,
    Lt = 1,
    Gte = 2,
    Gt = 3,
    Eq = 4,
    Neq = 5,
    /// `x` truncated to a 32-bit integer the way x86 converts it (NaN and out-of-range
    /// values become `i32::MIN`) equals `t`: onnxruntime's test for the set-membership
    /// branches whose members are not all in [0, 30].
    TruncatedEq = 6,
}

/// Where a branch leads: an index into `Ensemble::branches` or `Ensemble::leaves`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Child {
    Branch(usize),
    Leaf(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    pub feature: usize,
    pub comparison: Comparison,
    pub threshold: f64,
    /// `nodes_missing_value_tracks_true`: a NaN feature takes the true branch.
    pub nan_goes_true: bool,
    pub if_true: Child,
    pub if_false: Child,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Leaf {
    /// (target or class, weight), in attribute order.
    pub weights: Vec<(usize, f64)>,
    /// What the leaf adds when the ensemble has a single output: onnxruntime takes the
    /// leaf's first weight, ignoring any others, and the leaf node's own value when it has
    /// no weight.
    pub single_output_value: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ensemble {
    pub branches: Vec<Branch>,
    pub leaves: Vec<Leaf>,
    /// One per tree, in the order the trees are evaluated (and their scores added).
    pub roots: Vec<Child>,
    /// Targets (regressors) or classes (classifiers).
    pub n_outputs: usize,
    pub aggregate: Aggregate,
    pub post_transform: PostTransform,
    pub base_values: Vec<f64>,
    /// Some thresholds or weights were given in double: compute in double whatever the input.
    pub double_attributes: bool,
}

impl Ensemble {
    /// Checks that no path from a root comes back to a branch it went through (a cycle
    /// would never reach a leaf). Branches shared by several paths are fine.
    pub fn check_acyclic(&self) -> Result<(), String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.branches.len()];
        for (tree, root) in self.roots.iter().enumerate() {
            let Child::Branch(root) = *root else {
                continue;
            };
            if marks[root] == Mark::Done {
                continue;
            }
            // Depth-first with an explicit stack: (branch, children already pushed).
            let mut stack = vec![(root, false)];
            while let Some((at, expanded)) = stack.pop() {
                if expanded {
                    marks[at] = Mark::Done;
                    continue;
                }
                match marks[at] {
                    Mark::Done => continue,
                    Mark::OnPath => {
                        return Err(format!("tree {tree} has a cycle: its paths never end"));
                    }
                    Mark::New => {}
                }
                marks[at] = Mark::OnPath;
                stack.push((at, true));
                for child in [self.branches[at].if_true, self.branches[at].if_false] {
                    if let Child::Branch(next) = child {
                        match marks[next] {
                            Mark::OnPath => {
                                return Err(format!(
                                    "tree {tree} has a cycle: its paths never end"
                                ));
                            }
                            Mark::New => stack.push((next, false)),
                            Mark::Done => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(if_true: Child, if_false: Child) -> Branch {
        Branch {
            feature: 0,
            comparison: Comparison::Leq,
            threshold: 0.0,
            nan_goes_true: false,
            if_true,
            if_false,
        }
    }

    fn ensemble(branches: Vec<Branch>) -> Ensemble {
        Ensemble {
            branches,
            leaves: vec![Leaf::default()],
            roots: vec![Child::Branch(0)],
            n_outputs: 1,
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            base_values: vec![],
            double_attributes: false,
        }
    }

    #[test]
    fn shared_branches_are_not_cycles() {
        // 0 -> (1, 2), 1 -> (2, leaf), 2 -> (leaf, leaf): branch 2 is reached twice.
        let e = ensemble(vec![
            branch(Child::Branch(1), Child::Branch(2)),
            branch(Child::Branch(2), Child::Leaf(0)),
            branch(Child::Leaf(0), Child::Leaf(0)),
        ]);
        assert_eq!(e.check_acyclic(), Ok(()));
    }

    #[test]
    fn a_path_back_to_an_ancestor_is_a_cycle() {
        let e = ensemble(vec![
            branch(Child::Branch(1), Child::Leaf(0)),
            branch(Child::Leaf(0), Child::Branch(0)),
        ]);
        assert!(e.check_acyclic().unwrap_err().contains("cycle"));
        let self_loop = ensemble(vec![branch(Child::Branch(0), Child::Leaf(0))]);
        assert!(self_loop.check_acyclic().is_err());
    }
}
