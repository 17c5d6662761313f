/*
 * The pod sandbox ("pause") program: the first process of every pod, which
 * holds the pod's namespaces while the app containers come and go. Kubernetes
 * normally pulls it as registry.k8s.io/pause; there is no image registry here,
 * so tests/env/images.sh builds it from this file, statically linked, into the
 * image pixelpipe.local/pause:1. It does what upstream's does: exit 0 on
 * SIGINT or SIGTERM, reap zombie children, and otherwise sleep.
 *
 *   cc -Os -static -o pause pause.c && strip pause
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
  (void)sig;
  _exit(0);
}

static void on_child(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static void handle(int sig, void (*fn)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) < 0) {
    perror("sigaction");
    exit(1);
  }
}

int main(void) {
  if (getpid() != 1) {
    /* Not an error: it still works, as upstream's does. */
    fprintf(stderr, "pause: warning: not pid 1\n");
  }
  handle(SIGINT, on_stop, 0);
  handle(SIGTERM, on_stop, 0);
  handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART);
  for (;;) {
    pause();
  }
}
