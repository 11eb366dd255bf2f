// Prints its pid, then availableProcessors(), maxMemory() (the heap's maximum) and the
// OperatingSystemMXBean's total memory and processors, once per input line. `java Probe.java`.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;

public class Probe {
    public static void main(String[] args) throws Exception {
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        var in = new BufferedReader(new InputStreamReader(System.in));
        System.out.println(ProcessHandle.current().pid());
        while (in.readLine() != null) {
            var runtime = Runtime.getRuntime();
            System.out.println(runtime.availableProcessors() + " " + runtime.maxMemory() + " "
                + os.getTotalMemorySize() + " " + os.getAvailableProcessors());
        }
    }
}
