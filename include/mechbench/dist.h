/*
 * dist.h: running one command over MPI ranks (Open MPI; `mpirun -n K
 * mechbench run --suite S`). The only module that knows MPI: built with it
 * when CMake finds it (option MB_MPI), else every function here behaves as
 * one rank of one, and a process that the environment says is one rank of
 * several refuses to run (it would run the whole suite K times).
 *
 * Every rank runs the same command. Each entry's items are split by the
 * shard rule (shard.h: key rank r to rank r mod K); each rank runs its share
 * with OpenMP inside, the values are gathered to rank 0, which alone computes
 * the aggregates on all of them in dataset order, writes SQLite and the
 * reports: the stored bits are those of one process. Other ranks' stdout and
 * stderr go to /dev/null; their errors reach rank 0 through mb_dist_agree,
 * which prints one line naming the rank and the item. A rank that fails
 * outside an agreement (or dies: mpirun then ends the job) takes the job
 * down with MPI_Abort before anything is stored: rank 0 writes only after
 * every rank's values are in.
 */
#ifndef MECHBENCH_DIST_H
#define MECHBENCH_DIST_H

#include <mechbench/error.h>
#include <mechbench/figure.h>
#include <mechbench/runner.h>

/* Starts MPI when the environment says this process is one of an MPI job
 * (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE), else nothing. MB_EINVALID
 * for an MPI launch of a build without MPI. */
int mb_dist_init(int *argc, char ***argv, mb_error *err);
/* Ends MPI with the command's exit code: a rank that fails with an error not
 * every rank agreed on (mb_dist_agree) aborts the job; then MPI_Finalize. */
void mb_dist_finalize(int exit_code, const mb_error *err);

int mb_dist_rank(void); /* 0 without MPI */
int mb_dist_size(void); /* 1 without MPI */
/* 1 when this build has MPI. */
int mb_dist_built(void);

/* Collective: every rank passes its outcome (0, or a negative code with the
 * message in *err). Returns 0 when all succeeded; else the first failing
 * rank's code on every rank, and on rank 0 *err becomes "rank R of K:
 * <its message>". */
int mb_dist_agree(int error, mb_error *err);

/* Collective: rank 0's strings list[0..n) to every rank. On the others *list
 * (n strings, each malloc'd, the array too; free with mb_dist_strings_free)
 * and *n are filled; rank 0's are left as they are. */
int mb_dist_bcast_strings(char ***list, size_t *n, mb_error *err);
void mb_dist_strings_free(char **list, size_t n);

/* A runner split (runner.h opts->split, payload NULL) over all ranks: every
 * rank calls it for the same entries in the same order. Rank 0 gets the whole
 * entry with its aggregates (mb_runner_entry_finish), the others their share
 * (values only). */
int mb_dist_run_entry(void *payload, mb_entry_result *out, const mb_spec *spec,
		      const mb_spec_entry *e, const mb_dataset *d, const char *root,
		      const char *model_dir, const char *model_label, const mb_runner_opts *opts,
		      mb_error *err);

/* Whole units of work dealt to ranks (drift's checkpoints): 1 when n units
 * are at least as many as the ranks (K > 1), so that every rank gets whole
 * units; unit u then belongs to rank u mod K, which runs it as one process
 * would and sends it to rank 0 (mb_dist_send_unit); rank 0 runs its own and
 * receives the others' in unit order (mb_dist_recv_unit). Fewer units than
 * ranks: split each unit's items instead (mb_dist_run_entry). */
int mb_dist_whole_units(size_t n);

/* A rank's whole unit `label` (the checkpoint path) to rank 0: each of the n
 * entries' model file digests, seconds and values, and its figures; or, with
 * error < 0, err's message. Returns error (0 when it was sent). */
int mb_dist_send_unit(const char *label, const mb_entry_result *entries,
		      const mb_figure_list *figs, size_t n, int error, const mb_error *err);

/* On rank 0: receives unit `label` from rank `from` and rebuilds entries[i]
 * (spec's entry i over datasets[i], model label `label`) with every aggregate
 * computed here (mb_runner_entry_finish: the bits of one process) and its
 * figures figs[i]; *n_done of them. The sender's error arrives as "rank R
 * of K: <its message>". */
int mb_dist_recv_unit(mb_entry_result *entries, size_t *n_done, mb_figure_list *figs, int from,
		      const mb_spec *spec, const mb_dataset *datasets, const char *label,
		      mb_error *err);

/* On rank 0 after a failure at unit `failed` of n (whole units): receives
 * and drops every later unit of the other ranks, which keep sending one
 * message per unit they own (mb_dist_send_unit, an error for those after
 * their own failure), so that every rank ends without MPI_Abort. */
void mb_dist_drain_units(size_t failed, size_t n);

#endif
