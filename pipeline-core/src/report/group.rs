//! Calls named `<base>[<i>]` (a map's per-item calls, or labelled calls of a loop) listed
//! together: the one grouping `pipeline show` and `pipeline diff` share, so a map over
//! 10,000 items prints a screenful, not 10,000 rows.

use std::collections::HashMap;

use crate::map::{item_call, item_call_root, item_path};

/// Groups of calls named `<base>[<i>]` larger than this are summed up: `pipeline show` and
/// the dashboard list their first [`GROUP_SHOWN`] calls and one summary row, `diff`
/// collapses their runs of equal calls and lists this many different ones at most one by
/// one.
pub const GROUP_LIMIT: usize = 8;
/// How many calls of a large group are listed one by one.
pub const GROUP_SHOWN: usize = 3;

/// One row (or block of rows) of a list of a run's calls ([`list_calls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// A call, by its index in the list given.
    Step(usize),
    /// The calls of group `base` not listed one by one, by index, in item order.
    More {
        /// The group's name: the `train_fold` of `train_fold[3]`.
        base: String,
        /// The calls summed up, by index in the list given.
        steps: Vec<usize>,
    },
}

/// The order a run's calls (their `names`, in pipeline order) are listed in by `pipeline
/// show` and the dashboard: each group of `<base>[<i>]` calls ([`item_call`]) together, by
/// item number, where its first call is; a group of more than [`GROUP_LIMIT`] by its first
/// [`GROUP_SHOWN`] calls and a [`Listed::More`], unless `expanded(base)`.
pub fn list_calls<'a>(
    names: impl IntoIterator<Item = &'a str>,
    expanded: impl Fn(&str) -> bool,
) -> Vec<Listed> {
    let names: Vec<&str> = names.into_iter().collect();
    let mut listed = Vec::with_capacity(names.len());
    for entry in grouped(names.iter().copied()) {
        let (base, members) = match entry {
            Grouped::One(i) => {
                listed.push(Listed::Step(i));
                continue;
            }
            Grouped::Items { base, members } => (base, members),
        };
        let shown = if members.len() > GROUP_LIMIT && !expanded(base) {
            GROUP_SHOWN
        } else {
            members.len()
        };
        listed.extend(members[..shown].iter().map(|&(_, i)| Listed::Step(i)));
        if shown < members.len() {
            listed.push(Listed::More {
                base: base.to_string(),
                steps: members[shown..].iter().map(|&(_, i)| i).collect(),
            });
        }
    }
    listed
}

/// One entry of a listing: a call alone, or a group of `<base>[<i>]` calls.
pub(crate) enum Grouped<'a> {
    /// A call, by its index in the listed calls.
    One(usize),
    /// The calls named `<base>[<i>]`, as `(i, index in the listed calls)`, by item number.
    Items {
        /// Their name without the item number.
        base: &'a str,
        /// The calls, by item number (then by position for equal numbers).
        members: Vec<(u64, usize)>,
    },
}

/// `names` (the listed calls' names, in their order) as listed: each group of `<base>[<i>]`
/// calls together, where its first call is, by item number; every other call where it is.
/// The groups of a map nested in a map (`train_at[0][j]`, `train_at[1][j]`, ...) are
/// listed together, by outer item, where the first of them is. Linear but for sorting.
pub(crate) fn grouped<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<Grouped<'a>> {
    let mut groups: HashMap<&str, Vec<(u64, usize)>> = HashMap::new();
    // Per outermost name (`train_at`), its groups' bases with their outer item numbers.
    let mut families: HashMap<&str, Vec<(Vec<u64>, &str)>> = HashMap::new();
    for (i, name) in names.clone().enumerate() {
        if let Some((base, n)) = item_call(name) {
            let members = groups.entry(base).or_default();
            if members.is_empty() {
                let (root, outer) = item_path(base);
                families.entry(root).or_default().push((outer, base));
            }
            members.push((n, i));
        }
    }
    let mut listed = Vec::new();
    for (i, name) in names.enumerate() {
        let Some((base, _)) = item_call(name) else {
            listed.push(Grouped::One(i));
            continue;
        };
        // Listed once, where the family's first call is.
        let Some(mut family) = families.remove(item_call_root(base).unwrap_or(base)) else {
            continue;
        };
        family.sort_unstable();
        for (_, base) in family {
            if let Some(mut members) = groups.remove(base) {
                members.sort_unstable();
                listed.push(Grouped::Items { base, members });
            }
        }
    }
    listed
}

/// `base[first..=last]`, the range of item numbers `items` covers.
pub fn range_name(base: &str, items: impl Iterator<Item = u64>) -> String {
    let (first, last) = items.fold((u64::MAX, 0), |(lo, hi), i| (lo.min(i), hi.max(i)));
    format!("{base}[{first}..={last}]")
}

/// `names` (calls' names, in their order) as a person reads a list of them: each group of
/// more than [`GROUP_LIMIT`] `<base>[<i>]` calls as one entry, its range
/// (`train_fold[0..=9999]`), every other name as it is. Linear but for sorting each group.
pub(crate) fn call_names<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    let all: Vec<&str> = names.clone().collect();
    let mut out = Vec::new();
    for entry in grouped(names) {
        match entry {
            Grouped::One(i) => out.push(all[i].to_string()),
            Grouped::Items { base, members } if members.len() > GROUP_LIMIT => {
                out.push(range_name(base, members.iter().map(|&(n, _)| n)));
            }
            Grouped::Items { members, .. } => {
                out.extend(members.iter().map(|&(_, i)| all[i].to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::call_names;

    #[test]
    fn a_large_group_of_names_is_one_range_and_a_small_one_stays() {
        let mut names: Vec<String> = vec!["make_folds".into()];
        names.extend((0..10_000).map(|i| format!("train_fold[{i}]")));
        names.extend((0..3).map(|i| format!("shift[{i}]")));
        names.push("mean".into());
        assert_eq!(
            call_names(names.iter().map(String::as_str)),
            [
                "make_folds",
                "train_fold[0..=9999]",
                "shift[0]",
                "shift[1]",
                "shift[2]",
                "mean"
            ]
        );
    }

    #[test]
    fn the_groups_of_a_nested_map_are_listed_together_by_outer_item() {
        let names = [
            "grid",
            "train_at[1][0]",
            "train_at[1][1]",
            "mean[1]",
            "train_at[0][1]",
            "train_at[0][0]",
            "mean[0]",
            "best",
        ];
        assert_eq!(
            call_names(names.into_iter()),
            [
                "grid",
                "train_at[0][0]",
                "train_at[0][1]",
                "train_at[1][0]",
                "train_at[1][1]",
                "mean[0]",
                "mean[1]",
                "best"
            ]
        );
    }
}
