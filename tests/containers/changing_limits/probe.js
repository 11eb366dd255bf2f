// Prints its pid, then os.cpus().length, os.totalmem() and os.availableParallelism() per input line.
const os = require("os");
const lines = require("readline").createInterface({ input: process.stdin });
console.log(process.pid);
lines.on("line", () => {
  const parallelism = os.availableParallelism ? os.availableParallelism() : "-";
  console.log(`${os.cpus().length} ${os.totalmem()} ${parallelism}`);
});
