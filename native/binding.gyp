{
  "targets": [
    {
      "target_name": "cloister_native",
      "sources": ["src/cloister_native.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
