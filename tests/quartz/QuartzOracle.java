import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.util.Date;
import java.util.TimeZone;

import org.quartz.CronExpression;

/**
 * Differential-test oracle: asks Quartz's own CronExpression for fire times.
 *
 * Reads lines "EXPRESSION<TAB>TIMEZONE<TAB>START_EPOCH_SECONDS<TAB>COUNT" on stdin and
 * writes one line per input: "ERR <message>" if Quartz rejects the expression, otherwise
 * "OK" followed by up to COUNT chained getTimeAfter() results in epoch seconds
 * ("-" where getTimeAfter returned null).
 */
public final class QuartzOracle {
    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            String[] parts = line.split("\t");
            StringBuilder sb = new StringBuilder();
            try {
                CronExpression cron = new CronExpression(parts[0]);
                cron.setTimeZone(TimeZone.getTimeZone(parts[1]));
                Date current = new Date(Long.parseLong(parts[2]) * 1000L);
                int count = Integer.parseInt(parts[3]);
                sb.append("OK");
                for (int i = 0; i < count; i++) {
                    current = current == null ? null : cron.getTimeAfter(current);
                    sb.append(' ').append(current == null ? "-" : Long.toString(current.getTime() / 1000L));
                }
            } catch (Exception e) {
                sb.setLength(0);
                sb.append("ERR ").append(String.valueOf(e.getMessage()).replace('\n', ' '));
            }
            out.write(sb.toString());
            out.newLine();
        }
        out.flush();
    }
}
