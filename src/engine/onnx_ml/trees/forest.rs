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
/// Walks done side by side.
const LANES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
struct Node<T> {
    threshold: T,
    /// The feature (24 bits), the comparison (3 bits) and whether NaN goes true (1 bit).
    key: u32,
    /// Where the walk goes: `children[1]` when the comparison holds, else `children[0]`.
    children: [u32; 2],
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
    /// Some branch sends NaN to its true side.
    nan_tracks: bool,
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
                    children: [
                        encode(branch.if_false, &placed),
                        encode(branch.if_true, &placed),
                    ],
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
        let nan_tracks = reached().any(|b| b.nan_goes_true);
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
            nan_tracks,
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
        let rows = Rows {
            x,
            stride,
            count: rows,
        };
        match (self.uniform, self.nan_tracks) {
            (Some(Comparison::Leq), false) => {
                self.score_with::<{ Comparison::Leq as u8 }, false>(rows, &mut scores)
            }
            (Some(Comparison::Leq), true) => {
                self.score_with::<{ Comparison::Leq as u8 }, true>(rows, &mut scores)
            }
            (Some(Comparison::Lt), false) => {
                self.score_with::<{ Comparison::Lt as u8 }, false>(rows, &mut scores)
            }
            (Some(Comparison::Lt), true) => {
                self.score_with::<{ Comparison::Lt as u8 }, true>(rows, &mut scores)
            }
            _ => self.score_with::<MIXED, true>(rows, &mut scores),
        }
        scores
    }

    /// Walks `LANES` (tree, row) pairs side by side: a row's walk down a tree is a chain of
    /// dependent loads, and several independent chains keep the core busy where one would
    /// wait. Many rows: each tree takes the rows `LANES` at a time; few rows: each row takes
    /// the trees `LANES` at a time. Either way a row's leaves are added in tree order.
    fn score_with<const C: u8, const NAN: bool>(&self, rows: Rows<T>, scores: &mut Scores<T>) {
        if rows.count >= LANES {
            for block in (0..rows.count).step_by(BLOCK) {
                let block = block..rows.count.min(block + BLOCK);
                for &root in &self.roots {
                    let mut row = block.start;
                    while row + LANES <= block.end {
                        let features = std::array::from_fn(|k| rows.get(row + k));
                        let leaves = self.walk::<C, NAN, LANES>([root; LANES], features);
                        for (k, leaf) in leaves.into_iter().enumerate() {
                            self.add(leaf, row + k, scores);
                        }
                        row += LANES;
                    }
                    for row in row..block.end {
                        let [leaf] = self.walk::<C, NAN, 1>([root], [rows.get(row)]);
                        self.add(leaf, row, scores);
                    }
                }
            }
        } else {
            for row in 0..rows.count {
                let features = rows.get(row);
                let mut trees = self.roots.chunks_exact(LANES);
                for roots in trees.by_ref() {
                    let roots: [u32; LANES] = std::array::from_fn(|k| roots[k]);
                    for leaf in self.walk::<C, NAN, LANES>(roots, [features; LANES]) {
                        self.add(leaf, row, scores);
                    }
                }
                for &root in trees.remainder() {
                    let [leaf] = self.walk::<C, NAN, 1>([root], [features]);
                    self.add(leaf, row, scores);
                }
            }
        }
    }

    /// Adds a leaf's value(s) to a row's scores.
    #[inline(always)]
    fn add(&self, leaf: usize, row: usize, scores: &mut Scores<T>) {
        if self.n_outputs == 1 {
            let value = self.leaf_values[leaf];
            self.aggregate(value, &mut scores.values[row], &mut scores.scored[row]);
        } else {
            let weights = self.leaf_starts[leaf] as usize..self.leaf_starts[leaf + 1] as usize;
            for w in weights {
                let at = row * self.n_outputs + self.weight_outputs[w] as usize;
                let value = self.weight_values[w];
                self.aggregate(value, &mut scores.values[at], &mut scores.scored[at]);
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

    /// The leaves `L` walks reach, each from its root with its row's features. Branch-free
    /// steps: a walk that has reached its leaf keeps it (reading node 0 meanwhile) until
    /// every walk has. `C` is the comparison every branch makes, or `MIXED` to read it from
    /// each; `NAN` is false when no branch sends NaN to its true side.
    #[inline(always)]
    fn walk<const C: u8, const NAN: bool, const L: usize>(
        &self,
        mut at: [u32; L],
        rows: [&[T]; L],
    ) -> [usize; L] {
        while at.iter().any(|&a| a & LEAF == 0) {
            for (a, row) in at.iter_mut().zip(rows) {
                let branch = *a & LEAF == 0;
                let node = &self.nodes[if branch { *a as usize } else { 0 }];
                let x = row[(node.key & FEATURE_BITS) as usize];
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
                let nan_goes_true = NAN && (node.key & NAN_GOES_TRUE != 0) & x.is_nan();
                let next = node.children[usize::from(holds | nan_goes_true)];
                *a = if branch { next } else { *a };
            }
        }
        at.map(|a| (a & !LEAF) as usize)
    }
}

/// The input rows: row `i` is `x[i * stride..(i + 1) * stride]`.
#[derive(Clone, Copy)]
struct Rows<'a, T> {
    x: &'a [T],
    stride: usize,
    count: usize,
}

impl<'a, T> Rows<'a, T> {
    fn get(&self, row: usize) -> &'a [T] {
        &self.x[row * self.stride..(row + 1) * self.stride]
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

    /// The leaf a row reaches, the plain way, as a reference for the laid-out walk.
    fn reference_leaf(e: &Ensemble, root: Child, row: &[f64]) -> usize {
        let mut at = root;
        loop {
            match at {
                Child::Leaf(leaf) => return leaf,
                Child::Branch(b) => {
                    let b = &e.branches[b];
                    let (x, t) = (row[b.feature], b.threshold);
                    let holds = match b.comparison {
                        Comparison::Leq => x <= t,
                        Comparison::Lt => x < t,
                        Comparison::Gte => x >= t,
                        Comparison::Gt => x > t,
                        Comparison::Eq => x == t,
                        Comparison::Neq => x != t,
                        Comparison::TruncatedEq => x.truncate_i32() == t.truncate_i32(),
                    };
                    at = if holds || (b.nan_goes_true && x.is_nan()) {
                        b.if_true
                    } else {
                        b.if_false
                    };
                }
            }
        }
    }

    /// A pseudo-random ensemble: `trees` trees of depth up to 6 over 5 features, every
    /// comparison, missing-value tracks, leaves with 0 to 3 weights over 3 outputs.
    fn random_ensemble(trees: usize, seed: u64, uniform: Option<Comparison>) -> Ensemble {
        let mut state = seed;
        let mut next = move |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let comparisons = [
            Comparison::Leq,
            Comparison::Lt,
            Comparison::Gte,
            Comparison::Gt,
            Comparison::Eq,
            Comparison::Neq,
            Comparison::TruncatedEq,
        ];
        let mut e = stump(Comparison::Leq, false);
        e.branches.clear();
        e.leaves.clear();
        e.roots.clear();
        e.n_outputs = 3;
        fn grow(
            e: &mut Ensemble,
            depth: u32,
            next: &mut dyn FnMut(u64) -> u64,
            pick: &dyn Fn(u64) -> Comparison,
        ) -> Child {
            if depth == 0 || next(4) == 0 {
                let weights = (0..next(4))
                    .map(|_| (next(3) as usize, next(100) as f64 / 8.0 - 6.0))
                    .collect();
                e.leaves.push(Leaf {
                    weights,
                    single_output_value: 0.0,
                });
                return Child::Leaf(e.leaves.len() - 1);
            }
            let at = e.branches.len();
            e.branches.push(Branch {
                feature: next(5) as usize,
                comparison: pick(next(7)),
                threshold: next(9) as f64 / 2.0 - 2.0,
                nan_goes_true: next(2) == 0,
                if_true: Child::Leaf(0),
                if_false: Child::Leaf(0),
            });
            e.branches[at].if_true = grow(e, depth - 1, next, pick);
            e.branches[at].if_false = grow(e, depth - 1, next, pick);
            Child::Branch(at)
        }
        let pick = move |k: u64| uniform.unwrap_or(comparisons[k as usize]);
        for _ in 0..trees {
            let root = grow(&mut e, 6, &mut next, &pick);
            e.roots.push(root);
        }
        if e.branches.len() > 2 {
            // A branch shared by two parents.
            e.branches[0].if_true = Child::Branch(2);
        }
        e
    }

    #[test]
    fn side_by_side_walks_reach_the_leaves_a_plain_walk_reaches() {
        let values = [-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, f64::NAN];
        for (trees, uniform) in [
            (1, None),
            (7, None),
            (8, None),
            (19, None),
            (19, Some(Comparison::Leq)),
            (9, Some(Comparison::Lt)),
        ] {
            let e = random_ensemble(trees, trees as u64 * 31 + 7, uniform);
            let f32s = Forest::<f32>::new(&e).unwrap();
            let f64s = Forest::<f64>::new(&e).unwrap();
            for rows in [1, 7, 8, 9, 130] {
                let x: Vec<f64> = (0..rows * 6)
                    .map(|i| values[(i * 7 + i / 5) % values.len()])
                    .collect();
                let mut expected = vec![0.0; rows * 3];
                for row in 0..rows {
                    for &root in &e.roots {
                        let leaf = reference_leaf(&e, root, &x[row * 6..row * 6 + 6]);
                        for &(o, w) in &e.leaves[leaf].weights {
                            expected[row * 3 + o] += w;
                        }
                    }
                }
                let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let got32: Vec<f64> = f32s
                    .score(&x32, rows, 6)
                    .values
                    .iter()
                    .map(|&v| v as f64)
                    .collect();
                assert_eq!(got32, expected, "{trees} trees, {rows} rows, f32");
                assert_eq!(
                    f64s.score(&x, rows, 6).values,
                    expected,
                    "{trees} trees, {rows} rows, f64"
                );
            }
        }
    }
}
