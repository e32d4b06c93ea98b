package alwaysonline.clients;

import org.junit.jupiter.api.DisplayName;

/** The suite with transports = ["polling"] (HTTP long-polling, never upgraded). */
@DisplayName("io.socket client over polling only")
class PollingTest extends ProtocolSuite {
  @Override
  String transport() {
    return "polling";
  }
}
