/*
 * mpiloop: the floor for the harness's stage loop on MPI.
 *
 * It moves exactly the messages the harness's MPI communicator moves for a
 * pipeline of no-op stages (harness/loop.go over harness/comm/mpi.go):
 *
 *   per stage:  one MPI_Bcast of a 256-byte slot (the empty stage
 *               message; for a visit's first stage, the visit message,
 *               which begins it: harness visitMsg.Begin)
 *               one MPI_Gather of a 256-byte slot per rank (empty reports)
 *
 * The communicator sends fixed 256-byte slots (an 8-byte length and 248
 * inline bytes) even for empty messages, so every call here is 256 bytes.
 * Nothing is encoded or decoded: this is MPI alone.
 *
 * Usage: mpirun -np R mpiloop [visits [stages [warmup-visits [work-ns]]]]
 *
 * With work-ns above 0, each rank busy-waits that many nanoseconds in
 * the timed visits (ns/stage, block-ns/stage; not in ns/round) where the
 * harness does its own work on the path a stage waits for: a Slice
 * after each stage's MPI_Bcast (before its MPI_Gather), rank 0 after
 * each MPI_Gather (before the next MPI_Bcast). It shows what a given
 * amount of such work costs a stage on this machine's MPI.
 * Rank 0 prints one line:
 *   mpiloop ranks=R visits=V stages=S ns/stage=X ns/round=Y block-ns/stage=Z
 * where ns/stage = total / (V*S), ns/round is the time of one bcast+gather
 * round alone, measured in a second timed loop without visits and without
 * work, and block-ns/stage is the median over BLOCKS equal
 * blocks of the timed visits of each block's ns/stage: on a machine shared
 * with other work, the run's typical rate, which a burst of that work in
 * a few blocks does not move.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOT 256
#define BLOCKS 20

static char sbuf[SLOT];
static char *rbuf;

static double work_ns; /* see Usage */
static int rank;

/* work busy-waits work_ns nanoseconds. */
static void work(void) {
	if (work_ns <= 0) return;
	double end = MPI_Wtime() + work_ns * 1e-9;
	while (MPI_Wtime() < end)
		;
}

static void visits(MPI_Comm c, long v, long s) {
	for (long i = 0; i < v; i++) {
		for (long j = 0; j < s; j++) {
			MPI_Bcast(sbuf, SLOT, MPI_BYTE, 0, c); /* j == 0: the visit's */
			if (rank != 0) work();
			MPI_Gather(sbuf, SLOT, MPI_BYTE, rbuf, SLOT, MPI_BYTE, 0, c);
			if (rank == 0) work();
		}
	}
}

static int cmp(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* blocks times the visits in BLOCKS blocks (the last takes the rest) and
 * returns the median block's ns/stage. */
static double blocks(MPI_Comm c, long v, long s) {
	double ns[BLOCKS];
	long per = v / BLOCKS;
	for (int b = 0; b < BLOCKS; b++) {
		long n = b < BLOCKS - 1 ? per : v - per * (BLOCKS - 1);
		double t = MPI_Wtime();
		visits(c, n, s);
		ns[b] = n > 0 ? (MPI_Wtime() - t) * 1e9 / ((double)n * s) : 0;
	}
	qsort(ns, BLOCKS, sizeof ns[0], cmp);
	return (ns[BLOCKS / 2 - 1] + ns[BLOCKS / 2]) / 2;
}

static void rounds(MPI_Comm c, long n) {
	for (long j = 0; j < n; j++) {
		MPI_Bcast(sbuf, SLOT, MPI_BYTE, 0, c);
		MPI_Gather(sbuf, SLOT, MPI_BYTE, rbuf, SLOT, MPI_BYTE, 0, c);
	}
}

int main(int argc, char **argv) {
	long v = argc > 1 ? atol(argv[1]) : 20000;
	long s = argc > 2 ? atol(argv[2]) : 10;
	long warm = argc > 3 ? atol(argv[3]) : v / 100;
	work_ns = argc > 4 ? atof(argv[4]) : 0;
	int size;
	MPI_Comm c;

	MPI_Init(&argc, &argv);
	/* A private duplicate of the world, as the harness uses. */
	MPI_Comm_dup(MPI_COMM_WORLD, &c);
	MPI_Comm_rank(c, &rank);
	MPI_Comm_size(c, &size);
	if (v < 1 || s < 1 || warm < 0 || work_ns < 0) {
		if (rank == 0) fprintf(stderr, "mpiloop: usage: mpiloop [visits [stages [warmup-visits [work-ns]]]]\n");
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	rbuf = malloc((size_t)size * SLOT);
	memset(sbuf, 0, SLOT);

	visits(c, warm, s);
	MPI_Barrier(c);
	double t0 = MPI_Wtime();
	double median = blocks(c, v, s);
	double t1 = MPI_Wtime();

	MPI_Barrier(c);
	double t2 = MPI_Wtime();
	rounds(c, v * s);
	double t3 = MPI_Wtime();

	if (rank == 0) {
		printf("mpiloop ranks=%d visits=%ld stages=%ld ns/stage=%.0f ns/round=%.0f block-ns/stage=%.0f\n",
		       size, v, s, (t1 - t0) * 1e9 / ((double)v * s), (t3 - t2) * 1e9 / ((double)v * s), median);
	}
	free(rbuf);
	MPI_Comm_free(&c);
	MPI_Finalize();
	return 0;
}
