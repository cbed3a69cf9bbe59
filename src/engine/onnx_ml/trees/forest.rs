//! The evaluation layout: every branch of every tree in one flat array of 16-byte nodes
//! (float thresholds), each tree's branches contiguous in depth-first order from its root;
//! children are indices, leaves are indices tagged with the high bit. Leaf values sit in
//! their own arrays. Evaluation walks a block of rows tree by tree, so a tree stays in cache
//! while the rows go through it, and adds each row's leaves in tree order, as onnxruntime
//! does (so sums round the same way).

use super::ensemble::{Aggregate, Child, Comparison, Ensemble};
use super::real::Real;
use std::collections::HashMap;

/// Marks a child index as a leaf index.
const LEAF: u32 = 1 << 31;
const FEATURE_BITS: u32 = 0x00FF_FFFF;
const COMPARISON_SHIFT: u32 = 24;
const NAN_GOES_TRUE: u32 = 1 << 28;
/// Stands for "the branches do not all compare the same way".
const MIXED: u8 = u8::MAX;
/// Rows evaluated together, tree by tree.
const BLOCK: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Node<T> {
    threshold: T,
    /// The feature (24 bits), the comparison (3 bits) and whether NaN goes true (1 bit).
    key: u32,
    if_true: u32,
    if_false: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Forest<T> {
    nodes: Vec<Node<T>>,
    roots: Vec<u32>,
    /// Single-output ensembles: what each leaf adds.
    leaf_values: Vec<T>,
    /// Multi-output ensembles: leaf `i`'s weights are `weights[leaf_starts[i]..leaf_starts[i + 1]]`.
    leaf_starts: Vec<u32>,
    weight_outputs: Vec<u32>,
    weight_values: Vec<T>,
    n_outputs: usize,
    aggregate: Aggregate,
    /// The comparison every branch makes, if they all make the same one.
    uniform: Option<Comparison>,
    /// How many features a row must have.
    width: usize,
}

/// What the trees gave each row: `values[row * n_outputs + output]`, and whether any leaf
/// (or, later, a base value) scored that output, which onnxruntime tracks and uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores<T> {
    pub values: Vec<T>,
    pub scored: Vec<bool>,
}

impl<T: Real> Forest<T> {
    /// Lays the ensemble out. Fails if it has more nodes than the layout can index.
    pub fn new(ensemble: &Ensemble) -> Result<Forest<T>, String> {
        if ensemble.branches.len() >= LEAF as usize || ensemble.leaves.len() >= LEAF as usize {
            return Err(format!(
                "the ensemble has {} branches and {} leaves; at most {} of each are supported",
                ensemble.branches.len(),
                ensemble.leaves.len(),
                LEAF - 1
            ));
        }
        let mut nodes: Vec<Node<T>> = Vec::with_capacity(ensemble.branches.len());
        // Where each branch of the ensemble went (a branch reached twice is laid out once).
        let mut placed: HashMap<usize, u32> = HashMap::with_capacity(ensemble.branches.len());
        let encode = |child: Child, placed: &HashMap<usize, u32>| match child {
            Child::Leaf(leaf) => leaf as u32 | LEAF,
            Child::Branch(branch) => placed[&branch],
        };
        let mut roots = Vec::with_capacity(ensemble.roots.len());
        for &root in &ensemble.roots {
            // Place the tree's branches depth first, then link them (children placed after).
            let mut order = vec![];
            let mut stack = vec![root];
            while let Some(child) = stack.pop() {
                let Child::Branch(b) = child else { continue };
                if placed.contains_key(&b) {
                    continue;
                }
                placed.insert(b, (nodes.len() + order.len()) as u32);
                order.push(b);
                let branch = &ensemble.branches[b];
                stack.extend([branch.if_false, branch.if_true]);
            }
            for b in order {
                let branch = &ensemble.branches[b];
                let mut key = branch.feature as u32 & FEATURE_BITS;
                key |= (branch.comparison as u32) << COMPARISON_SHIFT;
                if branch.nan_goes_true {
                    key |= NAN_GOES_TRUE;
                }
                nodes.push(Node {
                    threshold: T::from_f64(branch.threshold),
                    key,
                    if_true: encode(branch.if_true, &placed),
                    if_false: encode(branch.if_false, &placed),
                });
            }
            roots.push(encode(root, &placed));
        }

        let mut leaf_starts = vec![0u32];
        let (mut weight_outputs, mut weight_values) = (vec![], vec![]);
        for leaf in &ensemble.leaves {
            for &(output, weight) in &leaf.weights {
                weight_outputs.push(output as u32);
                weight_values.push(T::from_f64(weight));
            }
            leaf_starts.push(weight_values.len() as u32);
        }
        // Only the branches the trees reach count (a TreeEnsemble may list others).
        let reached = || placed.keys().map(|&b| &ensemble.branches[b]);
        let first = reached().next().map(|b| b.comparison);
        let uniform = first.filter(|&c| reached().all(|b| b.comparison == c));
        let width = reached().map(|b| b.feature + 1).max().unwrap_or(0);
        Ok(Forest {
            nodes,
            roots,
            leaf_values: ensemble
                .leaves
                .iter()
                .map(|l| T::from_f64(l.single_output_value))
                .collect(),
            leaf_starts,
            weight_outputs,
            weight_values,
            n_outputs: ensemble.n_outputs,
            aggregate: ensemble.aggregate,
            uniform,
            width,
        })
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// How many features a row must have.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Runs `rows` rows of `stride` features (`stride >= self.width()`) through the trees.
    pub fn score(&self, x: &[T], rows: usize, stride: usize) -> Scores<T> {
        debug_assert!(stride >= self.width && x.len() >= rows * stride);
        let mut scores = Scores {
            values: vec![T::ZERO; rows * self.n_outputs],
            scored: vec![false; rows * self.n_outputs],
        };
        match self.uniform {
            Some(Comparison::Leq) => {
                self.score_with::<{ Comparison::Leq as u8 }>(x, stride, &mut scores)
            }
            Some(Comparison::Lt) => {
                self.score_with::<{ Comparison::Lt as u8 }>(x, stride, &mut scores)
            }
            _ => self.score_with::<MIXED>(x, stride, &mut scores),
        }
        scores
    }

    fn score_with<const C: u8>(&self, x: &[T], stride: usize, scores: &mut Scores<T>) {
        let rows = scores.values.len() / self.n_outputs.max(1);
        for block in (0..rows).step_by(BLOCK) {
            let block = block..rows.min(block + BLOCK);
            for &root in &self.roots {
                for row in block.clone() {
                    let features = &x[row * stride..row * stride + stride];
                    let leaf = self.find_leaf::<C>(root, features);
                    if self.n_outputs == 1 {
                        let value = self.leaf_values[leaf];
                        self.aggregate(value, &mut scores.values[row], &mut scores.scored[row]);
                    } else {
                        let weights =
                            self.leaf_starts[leaf] as usize..self.leaf_starts[leaf + 1] as usize;
                        for w in weights {
                            let at = row * self.n_outputs + self.weight_outputs[w] as usize;
                            let value = self.weight_values[w];
                            self.aggregate(value, &mut scores.values[at], &mut scores.scored[at]);
                        }
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn aggregate(&self, value: T, score: &mut T, scored: &mut bool) {
        match self.aggregate {
            Aggregate::Sum | Aggregate::Average => *score = *score + value,
            Aggregate::Min => {
                if !*scored || value < *score {
                    *score = value
                }
            }
            Aggregate::Max => {
                if !*scored || value > *score {
                    *score = value
                }
            }
        }
        *scored = true;
    }

    /// The leaf a row reaches from `root`. `C` is the comparison every branch makes, or
    /// `MIXED` to read it from each branch.
    #[inline(always)]
    fn find_leaf<const C: u8>(&self, root: u32, features: &[T]) -> usize {
        let mut at = root;
        while at & LEAF == 0 {
            let node = &self.nodes[at as usize];
            let x = features[(node.key & FEATURE_BITS) as usize];
            let t = node.threshold;
            let comparison = if C == MIXED {
                ((node.key >> COMPARISON_SHIFT) & 7) as u8
            } else {
                C
            };
            let holds = match comparison {
                0 => x <= t,
                1 => x < t,
                2 => x >= t,
                3 => x > t,
                4 => x == t,
                5 => x != t,
                _ => x.truncate_i32() == t.truncate_i32(),
            };
            let nan_goes_true = node.key & NAN_GOES_TRUE != 0;
            at = if holds | (nan_goes_true & x.is_nan()) {
                node.if_true
            } else {
                node.if_false
            };
        }
        (at & !LEAF) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::super::ensemble::{Branch, Leaf, PostTransform};
    use super::*;

    fn branch(comparison: Comparison, threshold: f64, if_true: Child, if_false: Child) -> Branch {
        Branch {
            feature: 0,
            comparison,
            threshold,
            nan_goes_true: false,
            if_true,
            if_false,
        }
    }

    fn leaf(value: f64) -> Leaf {
        Leaf {
            weights: vec![(0, value)],
            single_output_value: value,
        }
    }

    fn stump(comparison: Comparison, nan_goes_true: bool) -> Ensemble {
        let mut b = branch(comparison, 1.0, Child::Leaf(0), Child::Leaf(1));
        b.nan_goes_true = nan_goes_true;
        Ensemble {
            branches: vec![b],
            leaves: vec![leaf(10.0), leaf(20.0)],
            roots: vec![Child::Branch(0)],
            n_outputs: 1,
            aggregate: Aggregate::Sum,
            post_transform: PostTransform::None,
            base_values: vec![],
            double_attributes: false,
        }
    }

    fn run(e: &Ensemble, xs: &[f32]) -> Vec<f32> {
        let forest = Forest::<f32>::new(e).unwrap();
        forest.score(xs, xs.len(), 1).values
    }

    #[test]
    fn every_comparison_and_nan_rule() {
        let xs = [0.0, 1.0, 2.0, f32::NAN];
        let table = [
            (Comparison::Leq, [10.0, 10.0, 20.0, 20.0]),
            (Comparison::Lt, [10.0, 20.0, 20.0, 20.0]),
            (Comparison::Gte, [20.0, 10.0, 10.0, 20.0]),
            (Comparison::Gt, [20.0, 20.0, 10.0, 20.0]),
            (Comparison::Eq, [20.0, 10.0, 20.0, 20.0]),
            // NaN != 1 holds, so NaN goes true with or without the missing-value track.
            (Comparison::Neq, [10.0, 20.0, 10.0, 10.0]),
        ];
        for (comparison, expected) in table {
            assert_eq!(
                run(&stump(comparison, false), &xs),
                expected,
                "{comparison:?}"
            );
            let mut tracked = expected;
            tracked[3] = 10.0;
            assert_eq!(
                run(&stump(comparison, true), &xs),
                tracked,
                "{comparison:?} tracked"
            );
        }
    }

    #[test]
    fn mixed_comparisons_and_shared_branches() {
        // Tree 0: x <= 1 ? (x == 0 ? 1 : 2) : 3; tree 1 reuses tree 0's inner branch.
        let e = Ensemble {
            branches: vec![
                branch(Comparison::Leq, 1.0, Child::Branch(1), Child::Leaf(2)),
                branch(Comparison::Eq, 0.0, Child::Leaf(0), Child::Leaf(1)),
            ],
            leaves: vec![leaf(1.0), leaf(2.0), leaf(3.0)],
            roots: vec![Child::Branch(0), Child::Branch(1), Child::Leaf(2)],
            ..stump(Comparison::Leq, false)
        };
        // Row 0.0: 1 + 1 + 3; row 0.5: 2 + 2 + 3; row 2.0: 3 + 2 + 3.
        assert_eq!(run(&e, &[0.0, 0.5, 2.0]), [5.0, 7.0, 8.0]);
        let forest = Forest::<f32>::new(&e).unwrap();
        assert_eq!(forest.nodes.len(), 2, "the shared branch is laid out once");
    }

    #[test]
    fn min_max_and_multi_output_accumulation() {
        let mut e = stump(Comparison::Leq, false);
        e.roots = vec![Child::Branch(0), Child::Leaf(0), Child::Leaf(1)];
        e.aggregate = Aggregate::Min;
        assert_eq!(run(&e, &[0.0, 2.0]), [10.0, 10.0]);
        e.aggregate = Aggregate::Max;
        assert_eq!(run(&e, &[0.0, 2.0]), [20.0, 20.0]);

        e.aggregate = Aggregate::Sum;
        e.n_outputs = 3;
        e.leaves = vec![
            Leaf {
                weights: vec![(2, 1.0), (0, 0.5), (2, 1.0)],
                single_output_value: 1.0,
            },
            Leaf {
                weights: vec![],
                single_output_value: 0.0,
            },
        ];
        let forest = Forest::<f64>::new(&e).unwrap();
        let scores = forest.score(&[0.0, 2.0], 2, 1);
        // Row 0: tree 0 and tree 1 reach leaf 0, tree 2 reaches the weightless leaf.
        assert_eq!(scores.values, [1.0, 0.0, 4.0, 0.5, 0.0, 2.0]);
        assert_eq!(scores.scored, [true, false, true, true, false, true]);
    }
}
