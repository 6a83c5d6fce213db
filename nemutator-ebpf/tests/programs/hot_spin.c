/*
 * Test and benchmark load for nemutator-ebpf: burns CPU in a function with a
 * distinctive name.
 *
 *   hot_spin_c [ROUNDS] [MODE]
 *
 * ROUNDS: units of work (0 = forever). MODE: "user" (default) spins in
 * nemutator_hot_spin_c; "sys" calls getppid() in a loop from
 * nemutator_hot_syscall_c, so samples have kernel stacks.
 * Prints "ready" when it starts and "elapsed_ns N" when ROUNDS are done.
 *
 * Build: gcc -O1 -fno-omit-frame-pointer -o hot_spin_c hot_spin.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

__attribute__((noinline)) unsigned long nemutator_hot_spin_c(unsigned long n)
{
	volatile unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++)
		acc += (i * i) ^ (acc >> 3);
	return acc;
}

__attribute__((noinline)) unsigned long nemutator_hot_syscall_c(unsigned long n)
{
	unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++) {
#if defined(__x86_64__)
		/* Inline, so the syscall is made from this function's frame (libc's
		 * syscall() has no frame pointer and would hide this caller). */
		long ret;
		__asm__ volatile("syscall"
				 : "=a"(ret)
				 : "a"((long)SYS_getppid)
				 : "rcx", "r11", "memory");
		acc += (unsigned long)ret;
#else
		acc += (unsigned long)syscall(SYS_getppid);
#endif
	}
	return acc;
}

int main(int argc, char **argv)
{
	unsigned long rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 0;
	int sys = argc > 2 && strcmp(argv[2], "sys") == 0;
	struct timespec t0, t1;
	unsigned long sink = 0;

	printf("ready\n");
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned long r = 0; rounds == 0 || r < rounds; r++)
		sink += sys ? nemutator_hot_syscall_c(1000) : nemutator_hot_spin_c(1000000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("elapsed_ns %lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL +
				      (t1.tv_nsec - t0.tv_nsec));
	return sink == 42 ? 1 : 0;
}
