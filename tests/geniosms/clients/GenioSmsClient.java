// What GenioSms's published Java sample (Main.java, GenioSms/geniosms) does, written
// again for the capture: the same HttpURLConnection calls, the same string joins.
// Usage: java GenioSmsClient.java get|post URL TO MSG API_KEY
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;

public class GenioSmsClient {
    private static final String USER_AGENT = "GenioSmsBot/1.0 (+http://api.geniosms.net)";

    public static void main(String[] args) throws IOException {
        String mode = args[0], url = args[1], to = args[2], msg = args[3], key = args[4];
        HttpURLConnection con;
        if (mode.equals("get")) {
            // The sample only swaps spaces for %20; everything else goes as it is.
            URL target = new URL(url + "?to=" + to + "&msg=" + msg.replace(" ", "%20") + "&api=" + key);
            con = (HttpURLConnection) target.openConnection();
            con.setRequestMethod("GET");
            con.setRequestProperty("User-Agent", USER_AGENT);
        } else {
            // The sample writes the joined parameters, unencoded, in the platform charset.
            String params = "to=" + to + "&msg=" + msg + "&api=" + key;
            con = (HttpURLConnection) new URL(url).openConnection();
            con.setRequestMethod("POST");
            con.setRequestProperty("User-Agent", USER_AGENT);
            con.setDoOutput(true);
            OutputStream os = con.getOutputStream();
            os.write(params.getBytes());
            os.flush();
            os.close();
        }
        int code = con.getResponseCode();
        System.out.println("Response Code :: " + code);
        if (code == HttpURLConnection.HTTP_OK) {
            BufferedReader in = new BufferedReader(new InputStreamReader(con.getInputStream()));
            StringBuilder body = new StringBuilder();
            String line;
            while ((line = in.readLine()) != null) {
                body.append(line);
            }
            in.close();
            System.out.println(body);
        } else {
            // As in the sample: the body of any other answer is never read.
            System.out.println("request did not work.");
        }
    }
}
