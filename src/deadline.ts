// One timeout race for all of cloister: settle as `work` does, or reject with the caller's own error when
// `ms` pass first. The timer is cleared either way, so a race that was won leaves no timer behind (a
// pending timer keeps a stopping process alive, or fires into a request that has long finished).

/** `work`, or a rejection with `onTimeout()` after `ms` milliseconds, whichever comes first. */
export async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
