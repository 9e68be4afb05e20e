/* trees.c — binary trees built whole and freed whole, the allocation
 * pattern of the classic binary-trees benchmark and of any program that
 * builds a structure, walks it and drops it: runs of fresh blocks of one
 * size, each freed long after its neighbours were made.
 *
 *   pm_bench_trees depth=D trees=N seed=S
 *
 * Builds N trees of depth D (2^(D+1) - 1 nodes of 24 bytes: two child
 * pointers and a value), one at a time: each is built depth-first, walked
 * to check every node's value and freed bottom-up. Reports pairs = the
 * nodes made and nodes = per tree. */
#include "bench.h"

typedef struct tree_node {
    struct tree_node *left, *right;
    uint64_t value;
} tree_node_t;

static tree_node_t *tree_build(unsigned depth, uint64_t value)
{
    tree_node_t *node = malloc(sizeof *node);
    if (node == NULL)
        bench_fail("malloc(%zu) returned NULL", sizeof *node);
    node->value = value;
    node->left = depth == 0 ? NULL : tree_build(depth - 1, value * 2);
    node->right = depth == 0 ? NULL : tree_build(depth - 1, value * 2 + 1);
    return node;
}

/* Checks every node holds the value it was built with, frees the tree, and
 * returns its node count. */
static uint64_t tree_check_free(tree_node_t *node, uint64_t value)
{
    if (node->value != value)
        bench_fail("tree node %p holds %" PRIu64 ", want %" PRIu64, (void *)node,
                   node->value, value);
    uint64_t count = 1;
    if (node->left != NULL)
        count += tree_check_free(node->left, value * 2) + tree_check_free(node->right, value * 2 + 1);
    free(node);
    return count;
}

int main(int argc, char **argv)
{
    bench_args_t args;
    bench_args_parse(&args, argc, argv);
    uint64_t depth = bench_arg(&args, "depth", 16);
    uint64_t trees = bench_arg(&args, "trees", 40);
    uint64_t seed = bench_arg(&args, "seed", 1);
    bench_args_done(&args);
    if (depth > 24)
        bench_fail("need depth <= 24");

    uint64_t nodes = 0;
    for (uint64_t i = 0; i < trees; i++)
        nodes += tree_check_free(tree_build((unsigned)depth, seed + i), seed + i);

    bench_report_begin("trees");
    bench_report("pairs", nodes);
    bench_report("nodes", nodes / (trees ? trees : 1));
    bench_report_end();
    return 0;
}
