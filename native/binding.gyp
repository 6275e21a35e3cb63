{
  "targets": [
    {
      "target_name": "cloister_native",
      "sources": [
        "src/addon.c",
        "src/common.c",
        "src/poller.c",
        "src/vsock.c",
        "src/nsm.c",
        "src/system.c",
        "src/splice.c",
        "src/netfilter.c",
        "src/fdwait.c"
      ],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
